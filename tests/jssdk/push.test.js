// Push rules and notification counts with matrix-js-sdk: the SDK reads the
// rules (GET /pushrules/ and m.push_rules in /sync), changes them, and
// shows the same unread and highlight counts as the server (per room and
// per thread) after a conversation with mentions and threads; receipts
// clear them. Run through run.sh (see README.md).
import "./polyfill.js";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as sdk from "matrix-js-sdk";
import { sendInThread, syncingUser } from "./accounts.js";
import { Polder, engines, sleep, waitFor, withLog } from "./server.js";

/** The server's counts for a room, from a /sync of its own. */
async function serverCounts(base, client, roomId) {
  const filter = JSON.stringify({ room: { timeline: { limit: 1, unread_thread_notifications: true } } });
  const res = await fetch(`${base}/_matrix/client/v3/sync?filter=${encodeURIComponent(filter)}`, {
    headers: { Authorization: `Bearer ${client.polderToken}` },
  });
  assert.equal(res.status, 200, "GET /sync");
  const body = await res.json();
  const jr = body.rooms?.join?.[roomId];
  const threads = {};
  for (const [id, c] of Object.entries(jr?.unread_thread_notifications ?? {})) {
    threads[id] = { total: c.notification_count ?? 0, highlight: c.highlight_count ?? 0 };
  }
  return {
    main: { total: jr?.unread_notifications?.notification_count ?? 0, highlight: jr?.unread_notifications?.highlight_count ?? 0 },
    threads,
  };
}

/** The SDK's counts for a room, in the same shape. */
function sdkCounts(client, roomId) {
  const room = client.getRoom(roomId);
  const threads = {};
  for (const t of room?.getThreads() ?? []) {
    const total = room.getThreadUnreadNotificationCount(t.id, sdk.NotificationCountType.Total);
    const highlight = room.getThreadUnreadNotificationCount(t.id, sdk.NotificationCountType.Highlight);
    if (total || highlight) threads[t.id] = { total, highlight };
  }
  return {
    main: {
      total: room?.getRoomUnreadNotificationCount(sdk.NotificationCountType.Total) ?? 0,
      highlight: room?.getRoomUnreadNotificationCount(sdk.NotificationCountType.Highlight) ?? 0,
    },
    threads,
  };
}

for (const engine of engines()) {
  describe(`push rules and counts with matrix-js-sdk on ${engine.name}`, { skip: engine.skip }, () => {
    /** @type {Polder} */
    let srv;
    let alice, bob, carol, roomId;
    const it = (name, fn) => test(name, withLog(() => srv, fn));

    before(async () => {
      srv = new Polder({ ...engine, args: ["--login-rate-limit-burst=1000"] });
      await srv.start();
      alice = await syncingUser(srv.baseUrl, "alice", { threadSupport: true });
      bob = await syncingUser(srv.baseUrl, "bob", { threadSupport: true });
      carol = await syncingUser(srv.baseUrl, "carol", { threadSupport: true });
      ({ room_id: roomId } = await alice.createRoom({ name: "Push", preset: "public_chat" }));
      await bob.joinRoom(roomId);
      await carol.joinRoom(roomId);
      await waitFor("alice sees bob and carol", () => alice.getRoom(roomId)?.getJoinedMemberCount() === 3);
    });
    after(async () => {
      for (const c of [alice, bob, carol]) c?.stopClient();
      await srv?.destroy();
    });

    it("reads and changes the push rules", async () => {
      const rules = await alice.getPushRules();
      const ids = rules.global.override.map((r) => r.rule_id);
      for (const want of [".m.rule.master", ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.suppress_edits"]) {
        assert.ok(ids.includes(want), `getPushRules: override rules ${JSON.stringify(ids)} lack ${want}`);
      }
      await alice.addPushRule("global", sdk.PushRuleKind.ContentSpecific, "cake", { pattern: "cake", actions: [sdk.PushRuleActionName.Notify] });
      await alice.setPushRuleEnabled("global", sdk.PushRuleKind.Override, ".m.rule.suppress_notices", false);
      // The change reaches the SDK through m.push_rules in /sync.
      await waitFor(
        "alice's client has the new rule and suppress_notices disabled",
        () =>
          alice.pushRules?.global?.content?.some((r) => r.rule_id === "cake") &&
          alice.pushRules.global.override.find((r) => r.rule_id === ".m.rule.suppress_notices")?.enabled === false,
      );
      await alice.deletePushRule("global", sdk.PushRuleKind.ContentSpecific, "cake");
      await alice.setPushRuleEnabled("global", sdk.PushRuleKind.Override, ".m.rule.suppress_notices", true);
      await waitFor("alice's client lost the rule", () => !alice.pushRules?.global?.content?.some((r) => r.rule_id === "cake"));
    });

    it("shows the server's unread and highlight counts after mentions and threads", async () => {
      const mention = (client, body, extra = {}) =>
        client.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body, "m.mentions": { user_ids: [alice.getUserId()] }, ...extra });
      await bob.sendTextMessage(roomId, "hello");
      await mention(bob, "alice, look");
      const { event_id: root } = await bob.sendTextMessage(roomId, "a thread");
      const inThread = { "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } } };
      await sendInThread(carol, roomId, "m.room.message", { msgtype: "m.text", body: "in the thread", ...inThread });
      await sendInThread(carol, roomId, "m.room.message", {
        msgtype: "m.text",
        body: "alice, in the thread",
        "m.mentions": { user_ids: [alice.getUserId()] },
        ...inThread,
      });
      await carol.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "👍" } });
      const { event_id: last } = await carol.sendTextMessage(roomId, "back in the room");

      const want = { main: { total: 4, highlight: 1 }, threads: { [root]: { total: 2, highlight: 1 } } };
      assert.deepEqual(await serverCounts(srv.baseUrl, alice, roomId), want, "server counts");
      await waitFor("the SDK shows the server's counts", async () => JSON.stringify(sdkCounts(alice, roomId)) === JSON.stringify(want));
      assert.equal(alice.getRoom(roomId).getUnreadNotificationCount(sdk.NotificationCountType.Total), 6, "getUnreadNotificationCount(total)");
      assert.equal(alice.getRoom(roomId).getUnreadNotificationCount(sdk.NotificationCountType.Highlight), 2, "getUnreadNotificationCount(highlight)");

      // A receipt on the main timeline clears the main counts only.
      const ev = await waitFor("alice has the last event", () => alice.getRoom(roomId)?.findEventById(last));
      await alice.sendReadReceipt(ev);
      const afterMain = { main: { total: 0, highlight: 0 }, threads: { [root]: { total: 2, highlight: 1 } } };
      assert.deepEqual(await serverCounts(srv.baseUrl, alice, roomId), afterMain, "server counts after the main receipt");
      await waitFor("the SDK shows the counts after the main receipt", async () => JSON.stringify(sdkCounts(alice, roomId)) === JSON.stringify(afterMain));

      // A threaded receipt on the thread's last message clears it.
      const thread = alice.getRoom(roomId).getThread(root);
      const threadLast = await waitFor("alice has the thread's events", () => {
        const evs = thread?.timeline?.filter((e) => e.getType() === "m.room.message") ?? [];
        return evs.length >= 2 && evs[evs.length - 1];
      });
      await alice.sendReadReceipt(threadLast);
      const none = { main: { total: 0, highlight: 0 }, threads: {} };
      await waitFor("the server's counts after the thread receipt", async () => JSON.stringify(await serverCounts(srv.baseUrl, alice, roomId)) === JSON.stringify(none));
      await waitFor("the SDK shows no counts", async () => JSON.stringify(sdkCounts(alice, roomId)) === JSON.stringify(none));
    });
  });
}
