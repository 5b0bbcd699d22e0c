// The everyday chat scenario with matrix-js-sdk as the client, two users on
// one polder: create a room, invite, join, chat, react, edit, reply in a
// thread, redact, upgrade the room, with a server restart in the middle.
// Each client's view (timeline, state, unread counts) must match what the
// other did. Run through run.sh (see README.md).
import "./polyfill.js";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as sdk from "matrix-js-sdk";
import { sendInThread, syncingUser } from "./accounts.js";
import { Polder, engines, sleep, waitFor, withLog } from "./server.js";

/** The IDs and bodies of the message-like events of a room's live timeline. */
function timeline(client, roomId) {
  const room = client.getRoom(roomId);
  if (!room) return [];
  return room
    .getLiveTimeline()
    .getEvents()
    .filter((e) => !e.isState())
    .map((e) => ({ id: e.getId(), type: e.getType(), body: e.getContent().body, redacted: e.isRedacted() }));
}

for (const engine of engines()) {
  describe(`chat scenario with matrix-js-sdk on ${engine.name}`, { skip: engine.skip }, () => {
    /** @type {Polder} */
    let srv;
    let alice, bob;
    const it = (name, fn) => test(name, withLog(() => srv, fn));

    before(async () => {
      srv = new Polder({ ...engine, args: ["--login-rate-limit-burst=1000"] });
      await srv.start();
      alice = await syncingUser(srv.baseUrl, "alice", { lazyLoadMembers: true });
      bob = await syncingUser(srv.baseUrl, "bob", { lazyLoadMembers: true });
    });
    after(async () => {
      alice?.stopClient();
      bob?.stopClient();
      await srv?.destroy();
    });

    let roomId, firstMsg, edited, reaction, threadRoot;

    it("creates a room, invites and joins", async () => {
      ({ room_id: roomId } = await alice.createRoom({ name: "Scenario", topic: "what we do every day", preset: "private_chat" }));
      await alice.invite(roomId, bob.getUserId());
      await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
      await bob.joinRoom(roomId);
      await waitFor("alice sees bob joined", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
      const room = await waitFor("bob's room is joined", () => {
        const r = bob.getRoom(roomId);
        return r?.getMyMembership() === "join" && r;
      });
      assert.equal(room.name, "Scenario", "bob's room name");
      assert.equal(room.currentState.getStateEvents("m.room.topic", "")?.getContent().topic, "what we do every day", "bob's room topic");
    });

    it("chats, and each sees the other's messages in order", async () => {
      // Each message waits for the other to see the one before, as people
      // do: then both timelines have one order.
      const seen = (c, id) => waitFor(`${c.getUserId()} sees ${id}`, () => timeline(c, roomId).some((e) => e.id === id));
      ({ event_id: firstMsg } = await alice.sendTextMessage(roomId, "hello bob"));
      await seen(bob, firstMsg);
      const { event_id: reply } = await bob.sendTextMessage(roomId, "hello alice");
      await seen(alice, reply);
      const { event_id: third } = await alice.sendTextMessage(roomId, "how are you?");
      for (const [who, c] of [["alice", alice], ["bob", bob]]) {
        await waitFor(`${who} sees all three messages`, () => {
          const ids = timeline(c, roomId).map((e) => e.id);
          return [firstMsg, reply, third].every((id) => ids.includes(id));
        });
        const ids = timeline(c, roomId).map((e) => e.id);
        assert.ok(ids.indexOf(firstMsg) < ids.indexOf(reply) && ids.indexOf(reply) < ids.indexOf(third), `${who}: messages out of order: ${ids}`);
      }
    });

    it("counts unread messages until a read receipt", async () => {
      const { event_id: last } = await alice.sendTextMessage(roomId, "unread one");
      await waitFor("bob's unread count is at least 1", () => bob.getRoom(roomId)?.getUnreadNotificationCount("total") >= 1);
      const ev = await waitFor("bob has the event", () => bob.getRoom(roomId)?.findEventById(last));
      await bob.sendReadReceipt(ev);
      await waitFor("bob's unread count drops to 0", () => bob.getRoom(roomId)?.getUnreadNotificationCount("total") === 0);
      await waitFor("alice sees bob's receipt", () => alice.getRoom(roomId)?.getUsersReadUpTo(alice.getRoom(roomId).findEventById(last))?.includes(bob.getUserId()));
    });

    it("reacts, edits and replies in a thread", async () => {
      ({ event_id: reaction } = await bob.sendEvent(roomId, "m.reaction", {
        "m.relates_to": { rel_type: "m.annotation", event_id: firstMsg, key: "👍" },
      }));
      // The same reaction twice is refused.
      await assert.rejects(
        bob.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: firstMsg, key: "👍" } }),
        (err) => err.errcode === "M_DUPLICATE_ANNOTATION",
        "a duplicate reaction",
      );
      ({ event_id: edited } = await alice.sendEvent(roomId, "m.room.message", {
        msgtype: "m.text",
        body: "* hello bob!",
        "m.new_content": { msgtype: "m.text", body: "hello bob!" },
        "m.relates_to": { rel_type: "m.replace", event_id: firstMsg },
      }));
      threadRoot = firstMsg;
      const inThread = await sendInThread(bob, roomId, "m.room.message", {
        msgtype: "m.text",
        body: "a thread reply",
        "m.relates_to": { rel_type: "m.thread", event_id: threadRoot, is_falling_back: true, "m.in_reply_to": { event_id: threadRoot } },
      });
      await waitFor("alice sees the reaction", () => alice.getRoom(roomId)?.findEventById(reaction));
      await waitFor("bob sees the edit applied", () => bob.getRoom(roomId)?.findEventById(firstMsg)?.getContent().body === "hello bob!");
      // The server's view of relations matches.
      const rel = await alice.relations(roomId, firstMsg, "m.annotation", "m.reaction");
      assert.deepEqual(rel.events.map((e) => e.getId()), [reaction], "relations(m.annotation)");
      const threads = await alice.http.authedRequest("GET", `/rooms/${encodeURIComponent(roomId)}/threads`, undefined, undefined, { prefix: "/_matrix/client/v1" });
      assert.ok(threads.chunk.some((e) => e.event_id === threadRoot), `threads: ${JSON.stringify(threads.chunk.map((e) => e.event_id))} lacks the root`);
      const root = threads.chunk.find((e) => e.event_id === threadRoot);
      assert.equal(root.unsigned?.["m.relations"]?.["m.thread"]?.latest_event?.event_id, inThread, "thread summary's latest event");
      assert.equal(root.unsigned?.["m.relations"]?.["m.thread"]?.count, 1, "thread summary's count");
    });

    it("redacts, and both clients see the redaction", async () => {
      await bob.redactEvent(roomId, reaction);
      for (const [who, c] of [["alice", alice], ["bob", bob]]) {
        await waitFor(`${who} sees the reaction redacted`, () => c.getRoom(roomId)?.findEventById(reaction)?.isRedacted());
      }
      const rel = await alice.relations(roomId, firstMsg, "m.annotation", "m.reaction");
      assert.deepEqual(rel.events, [], "relations after the reaction was redacted");
    });

    it("loses nothing across a restart, and sync resumes from the client's token", async () => {
      const before = timeline(bob, roomId).map((e) => e.id);
      await srv.stop();
      await srv.start();
      const { event_id: after } = await alice.sendTextMessage(roomId, "after the restart");
      await waitFor("bob's sync resumes and brings the new message", () => timeline(bob, roomId).some((e) => e.id === after), 30_000);
      const now = timeline(bob, roomId).map((e) => e.id);
      for (const id of before) assert.ok(now.includes(id), `bob lost ${id} across the restart`);
      // The server has it all too: paginate back from the end.
      const res = await bob.createMessagesRequest(roomId, null, 100, "b");
      const ids = res.chunk.map((e) => e.event_id);
      for (const id of [firstMsg, edited, after]) assert.ok(ids.includes(id), `/messages lacks ${id}`);
    });

    it("upgrades the room; both follow the tombstone", async () => {
      const { replacement_room: newRoom } = await alice.upgradeRoom(roomId, "11");
      for (const [who, c] of [["alice", alice], ["bob", bob]]) {
        await waitFor(`${who} sees the tombstone`, () => c.getRoom(roomId)?.currentState.getStateEvents("m.room.tombstone", "")?.getContent().replacement_room === newRoom);
      }
      // The old room was invite-only, and so is the new one: clients
      // (Element's upgrade dialog) invite the members, the server does not.
      await alice.invite(newRoom, bob.getUserId());
      await bob.joinRoom(newRoom);
      await waitFor("bob in the new room", () => bob.getRoom(newRoom)?.getMyMembership() === "join");
      const created = bob.getRoom(newRoom).currentState.getStateEvents("m.room.create", "");
      assert.equal(created.getContent().predecessor?.room_id, roomId, "predecessor of the new room");
      assert.equal(bob.getRoom(newRoom).name, "Scenario", "name carried over");
      const { event_id } = await bob.sendTextMessage(newRoom, "in the new room");
      await waitFor("alice sees bob's message in the new room", () => timeline(alice, newRoom).some((e) => e.id === event_id));
      // Each client's view of the old room's timeline is the same.
      const a = timeline(alice, roomId).map((e) => e.id);
      const b = timeline(bob, roomId).map((e) => e.id);
      const common = a.filter((id) => b.includes(id));
      assert.ok(common.length >= 5, `alice and bob share only ${common.length} events of the old room`);
    });
  });
}
