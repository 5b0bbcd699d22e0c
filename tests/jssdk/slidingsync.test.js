// Simplified sliding sync (MSC4186) with matrix-js-sdk's own SlidingSync
// class (lib/sliding-sync.js). matrix-js-sdk 43 sends its requests to
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (client.js
// slidingSync), in Synapse's dialect: pos and timeout in the query string,
// "ranges", required_state as [type, state_key] pairs, room subscriptions
// that stay until unsubscribe_rooms. The client logs in, lists its rooms,
// opens one (a room subscription with a longer timeline), and receives live
// messages and to-device events through an extension of its own, as the
// SDK's ExtensionToDevice does (since = the previous next_batch).
// Run through run.sh (see README.md).
import "./polyfill.js";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SlidingSync, SlidingSyncEvent } from "matrix-js-sdk/lib/sliding-sync.js";
import { localpart, register, sessionClient } from "./accounts.js";
import { Polder, engines, sleep, waitFor, withLog } from "./server.js";

for (const engine of engines()) {
  describe(`sliding sync with matrix-js-sdk on ${engine.name}`, { skip: engine.skip }, () => {
    let srv, alice, bob, ss;
    const rooms = new Map(); // room ID → merged room data
    const toDevice = [];
    let lists = {};
    const it = (name, fn) => test(name, withLog(() => srv, fn));

    before(async () => {
      srv = new Polder({ ...engine, args: ["--login-rate-limit-burst=1000"] });
      await srv.start();
      alice = sessionClient(srv.baseUrl, (await register(srv.baseUrl, localpart("alice"))).response);
      bob = sessionClient(srv.baseUrl, (await register(srv.baseUrl, localpart("bob"))).response);
    });
    after(async () => {
      ss?.stop();
      await srv?.destroy();
    });

    let general, quiet;

    it("lists the rooms, most recent first", async () => {
      ({ room_id: quiet } = await alice.createRoom({ name: "Quiet", preset: "public_chat" }));
      ({ room_id: general } = await alice.createRoom({ name: "General", preset: "public_chat" }));
      await bob.joinRoom(general);
      await bob.sendTextMessage(general, "welcome");

      ss = new SlidingSync(srv.baseUrl, new Map([["all", {
        ranges: [[0, 9]],
        timeline_limit: 1,
        required_state: [["m.room.create", ""], ["m.room.member", "$ME"]],
      }]]), { timeline_limit: 10, required_state: [["*", "*"]] }, alice, 10_000);
      let nextBatch;
      ss.registerExtension({
        name: () => "to_device",
        when: () => "ExtState.PreProcess",
        onRequest: async () => ({ enabled: true, since: nextBatch, limit: 100 }),
        onResponse: async (data) => {
          toDevice.push(...(data?.events ?? []));
          nextBatch = data?.next_batch;
        },
      });
      ss.on(SlidingSyncEvent.Lifecycle, (state, resp) => {
        if (resp?.lists) lists = { ...lists, ...resp.lists };
      });
      ss.on(SlidingSyncEvent.RoomData, (roomId, data) => {
        const old = data.initial ? {} : rooms.get(roomId) ?? {};
        // required_state of an update holds only what changed: keep the
        // room's state as a client does, by (type, state_key).
        const state = new Map((old.required_state ?? []).map((e) => [`${e.type}|${e.state_key}`, e]));
        for (const e of data.required_state ?? []) state.set(`${e.type}|${e.state_key}`, e);
        rooms.set(roomId, { ...old, ...data, timeline: [...(old.timeline ?? []), ...data.timeline], required_state: [...state.values()] });
      });
      ss.start();
      await waitFor("both rooms", () => rooms.has(general) && rooms.has(quiet));
      assert.equal(lists.all?.count, 2, "list count");
      const g = rooms.get(general);
      assert.equal(g.name, "General");
      assert.equal(g.joined_count, 2);
      assert.deepEqual(g.timeline.map((e) => e.content.body), ["welcome"]);
      assert.ok(rooms.get(general).bump_stamp > rooms.get(quiet).bump_stamp, "General is more recent");
      assert.ok(g.required_state.some((e) => e.type === "m.room.member" && e.state_key === alice.getUserId()), "own member event ($ME)");
    });

    it("opens a room with a room subscription", async () => {
      await bob.joinRoom(quiet);
      for (let i = 0; i < 5; i++) await bob.sendTextMessage(quiet, `history ${i}`);
      ss.modifyRoomSubscriptions(new Set([quiet]));
      // The list's own updates (timeline_limit 1) may bring the five
      // messages before the subscription's answer: wait for its state too.
      const bobsMember = (r) => r?.required_state?.some((e) => e.type === "m.room.member" && e.state_key === bob.getUserId());
      const q = await waitFor("the subscribed room's history and all its state ([*, *])", () => {
        const r = rooms.get(quiet);
        return r?.timeline?.filter((e) => e.content?.body?.startsWith("history")).length >= 5 && bobsMember(r) && r;
      });
      assert.ok(q.required_state.some((e) => e.type === "m.room.create"), "all state ([*, *]) has the create event");
    });

    it("receives live messages", async () => {
      await bob.sendTextMessage(general, "live one");
      await waitFor("the live message", () => rooms.get(general)?.timeline.some((e) => e.content?.body === "live one"));
    });

    it("receives to-device events", async () => {
      await bob.sendToDevice("org.example.ping", new Map([[alice.getUserId(), new Map([[alice.getDeviceId(), { n: 1 }]])]]));
      await waitFor("the to-device event", () => toDevice.some((e) => e.type === "org.example.ping" && e.content.n === 1));
    });
  });
}
