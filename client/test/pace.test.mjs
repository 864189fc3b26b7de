// Join pacing on a reconnect and the re-read of held pages: every room is joined however many tabs
// share the joins allowance, never more than 20 joins go unanswered per socket (a join that timed out
// or was refused for good is not sent again behind the cap), a room already joined is not held behind
// the queue, a queued room's leave spends nothing, and a re-read is bounded by a page count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyClient } from '../parley-client.js';
import { rewindMessageId } from '../lib/ids.js';
import { FakeClock, makeFakeWebSocket, tick } from '../test-support/fakes.mjs';
import { connected, messageIdAt, msg, setup } from '../test-support/harness.mjs';

const id = messageIdAt;
const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);
const rooms = (from, to) => range(from, to).map((n) => `room${n}`);
const answer = (ws, roomId) => ws.receive('chat_history', { roomId, messages: [], hasMore: false, unreadCount: 0 });
const refuse = (ws, code, extra = {}) => ws.receive('error', { code, message: 'x', requestType: 'join_room', ...extra });

/** A client in rooms room0..room{n-1}, connected: its first 20 joins are out. */
async function inRooms(n, joinTimeoutMs) {
  const s = setup({ client: { joinTimeoutMs, rejoinOverlapMs: 0 } });
  for (const room of rooms(0, n)) s.client.joinRoom(room);
  const p = s.client.connect();
  await tick();
  s.last().open();
  await p;
  s.joins = () => s.last().frames().filter((f) => f.type === 'join_room').map((f) => f.data.roomId);
  return s;
}

for (const [tabs, seed] of [[10, 3]]) {
  test(`${tabs} tabs in 350 rooms sharing 100 joins per 10 s: every room is joined, and no window reaches the flood line`, async () => {
    const clock = new FakeClock();
    const all = [];
    for (let t = 0; t < tabs; t++) {
      const WS = makeFakeWebSocket();
      const client = new ParleyClient({ url: 'ws://x', token: 'tok', WebSocketImpl: WS, timers: clock, now: () => clock.now, random: () => 0.5, joinTimeoutMs: 10000, rejoinOverlapMs: 0 });
      for (const room of rooms(0, 350)) client.joinRoom(room);
      const p = client.connect();
      await tick();
      WS.instances.at(-1).open();
      await p;
      all.push({ ws: () => WS.instances.at(-1), done: 0, joined: new Set() });
    }
    let rnd = seed;
    const random = () => {
      rnd = (rnd * 1103515245 + 12345) % 2147483648;
      return rnd / 2147483648;
    };
    const perWindow = new Map();
    while (clock.now < 400000 && all.some((tab) => tab.joined.size < 350)) {
      const batch = [];
      for (const tab of all) {
        const frames = tab.ws().frames().slice(tab.done);
        tab.done += frames.length;
        for (const f of frames) if (f.type === 'join_room') batch.push([tab, f]);
      }
      batch.sort(() => random() - 0.5); // the tabs' joins reach the server interleaved
      for (const [tab, f] of batch) {
        const w = Math.floor(clock.now / 10000);
        const n = (perWindow.get(w) || 0) + 1;
        perWindow.set(w, n);
        if (n <= 100) {
          tab.joined.add(f.data.roomId);
          answer(tab.ws(), f.data.roomId);
        } else {
          refuse(tab.ws(), 'rate_limited', { retryAfterMs: (w + 1) * 10000 - clock.now });
        }
      }
      if (!batch.length) clock.advance(100);
    }
    assert.ok(Math.max(...perWindow.values()) < 1000);
    assert.deepEqual(all.map((tab) => 350 - tab.joined.size), all.map(() => 0));
  });
}

test('a join that timed out gave its place: a later refusal does not send it again past the 20 unanswered', async () => {
  const s = await inRooms(100, 1000);
  s.clock.advance(1000); // the server never answers: 20 time out, 20 more go
  s.clock.advance(1000);
  assert.equal(s.joins().length, 60);
  refuse(s.last(), 'rate_limited', { retryAfterMs: 500 });
  s.clock.advance(500);
  assert.deepEqual(s.joins().slice(60), rooms(40, 60)); // only the 20 in flight go again
  // A late answer to a timed-out join is still its room's history.
  s.last().receive('chat_history', { roomId: 'room0', messages: [msg('room0', id(1))], hasMore: false, unreadCount: 0 });
  assert.equal(s.client.lastMessageId('room0'), id(1));
});

test('a join refused forbidden frees its place at once, lets its room\'s frames go, and is not sent again', async () => {
  const s = await inRooms(40, 10000);
  s.client.sendChatMessage('room0', 'hi');
  for (const room of rooms(0, 20)) refuse(s.last(), 'forbidden', { roomId: room, action: 'read' });
  assert.deepEqual(s.joins().slice(20), rooms(20, 40)); // no 10 s stall per batch
  assert.equal(s.last().frames().filter((f) => f.type === 'chat_message').length, 1); // the app sees it refused
  refuse(s.last(), 'rate_limited', { retryAfterMs: 100 });
  s.clock.advance(100);
  assert.deepEqual(s.joins().slice(40), rooms(20, 40));
});

test('joinRoom for a room whose refused join waits for its retry adds no join: the pending retry is the one join', async () => {
  const s = await inRooms(40, 10000);
  refuse(s.last(), 'rate_limited', { retryAfterMs: 500 });
  s.client.joinRoom('room0');
  s.clock.advance(500);
  assert.deepEqual(s.joins().slice(20), rooms(0, 20));
  for (const room of rooms(0, 20)) answer(s.last(), room);
  assert.deepEqual(s.joins().slice(40), rooms(20, 40));
});

test('a join answered after the app joined its room again is left with leave_room (the server counts the user in)', async () => {
  const s = await inRooms(40, 10000);
  refuse(s.last(), 'rate_limited', { retryAfterMs: 5000 }); // room0..room19 wait for their retry
  s.client.joinRoom('room5', { limit: 10 });
  answer(s.last(), 'room5'); // the first join had gone through before the limit
  s.client.leaveRoom('room5');
  assert.deepEqual(s.last().frames().filter((f) => f.type === 'leave_room').map((f) => f.data.roomId), ['room5']);
  s.clock.advance(5000);
  assert.ok(!s.joins().slice(20).includes('room5'));
});

test('joinRoom in a connect listener for a room already registered sends one join on the socket', async () => {
  const s = setup({ client: { rejoinOverlapMs: 0 } });
  s.client.joinRoom('lobby');
  s.client.on('connect', () => s.client.joinRoom('lobby'));
  const p = s.client.connect();
  await tick();
  s.last().open();
  await p;
  assert.deepEqual(s.last().frames().filter((f) => f.type === 'join_room').map((f) => f.data.roomId), ['lobby']);
});

test('joinRoom(since) for a joined room refused rate_limited is sent again after retryAfterMs', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0 } });
  const joins = () => s.last().frames().filter((f) => f.type === 'join_room');
  s.client.joinRoom('r');
  s.last().receive('chat_history', { roomId: 'r', messages: [msg('r', id(10))], hasMore: false, unreadCount: 0 });
  s.client.joinRoom('r', { since: id(20) });
  assert.equal(joins().length, 2);
  refuse(s.last(), 'rate_limited', { retryAfterMs: 500 });
  s.clock.advance(500);
  assert.deepEqual(joins().slice(2).map((f) => f.data.since), [id(20)]);
  s.clock.advance(60000);
  assert.equal(joins().length, 3);
});

test('a join refused after its hold timed out is sent again through the queue, five times at most for internal_error', async () => {
  const s = await inRooms(1, 1000);
  s.clock.advance(1000); // timed out: its place is given up
  refuse(s.last(), 'internal_error');
  assert.equal(s.joins().length, 1); // not at once: after the retry delay
  s.clock.advance(1000);
  assert.deepEqual(s.joins(), ['room0', 'room0']);
  for (let n = 0; n < 10; n++) {
    s.clock.advance(1000);
    refuse(s.last(), 'internal_error');
  }
  s.clock.advance(60000);
  assert.equal(s.joins().length, 6);
  // A late rate_limited for a timed-out join: sent again once the pause ends.
  const t = await inRooms(1, 1000);
  t.clock.advance(1000);
  refuse(t.last(), 'rate_limited', { retryAfterMs: 3000 });
  t.clock.advance(2999);
  assert.equal(t.joins().length, 1);
  t.clock.advance(1);
  assert.equal(t.joins().length, 2);
  answer(t.last(), 'room0');
  refuse(t.last(), 'internal_error'); // answered: not the refused one
  t.clock.advance(60000);
  assert.equal(t.joins().length, 2);
});

test('joinRoom with a since that is no messageId throws invalid_since and keeps nothing of the room', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0 } });
  assert.throws(() => s.client.joinRoom('r', { since: 'bogus' }), { name: 'ParleyError', code: 'invalid_since' });
  assert.deepEqual(s.client.rooms, []);
  assert.equal(s.last().frames().filter((f) => f.type === 'join_room').length, 0);
  s.client.joinRoom('r', { since: id(1) });
  assert.equal(s.last().frames().filter((f) => f.type === 'join_room').at(-1).data.since, id(1));
});

test('joinRoom for a room already joined does not hold its frames behind the queue', async () => {
  const s = await inRooms(60, 10000);
  answer(s.last(), 'room0');
  refuse(s.last(), 'rate_limited', { retryAfterMs: 9000 });
  s.client.joinRoom('room0');
  s.client.sendChatMessage('room0', 'hi');
  assert.equal(s.last().frames().filter((f) => f.type === 'chat_message').length, 1);
});

test('leaving a room whose join is still queued sends no leave_room (it would spend the joins allowance)', async () => {
  const s = await inRooms(30, 10000);
  s.client.leaveRoom('room25');
  s.client.leaveRoom('room0');
  assert.deepEqual(s.last().frames().filter((f) => f.type === 'leave_room').map((f) => f.data.roomId), ['room0']);
  for (const room of rooms(1, 21)) answer(s.last(), room);
  assert.ok(!s.joins().includes('room25'));
});

test('a re-read reads 20 pages at most, though the ids remembered are far apart, and a drop does not restart the count', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0 } });
  const { client, last, clock } = s;
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: range(100000, 100050).map((n) => msg('r', id(n))), hasMore: true, unreadCount: 0 });
  client.getHistory('r', id(1), { limit: 1 }); // a permalink far back
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id(0))], hasMore: true });
  const reconnect = () => {
    last().drop(1006);
    clock.advance(1000);
    last().open();
  };
  reconnect();
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(100049), changed: [], moreChanged: true });
  const reads = () => last().frames().filter((f) => f.type === 'get_history' && f.data.since);
  let pages = 0;
  const serve = (n) => {
    for (let k = 0; k < n && reads().length; k++) {
      const f = reads().at(-1);
      const sent = reads().length;
      last().receive('chat_history', { roomId: 'r', messages: range(pages * 100, pages * 100 + 100).map((i) => msg('r', id(i))), hasMore: true, since: f.data.since });
      pages += 1;
      if (reads().length === sent) return;
    }
  };
  assert.equal(reads()[0].data.since, rewindMessageId(id(0), 1));
  serve(10);
  reconnect();
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(100049), changed: [], moreChanged: false });
  assert.equal(reads().length, 1); // goes on from where it had got to
  serve(2000);
  assert.equal(pages, 20);
});

test('an answered join of a room already joined ends its hold: a later refused join does not send it again', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0, joinTimeoutMs: 10000 } });
  const joinsOf = (room) => s.last().frames().filter((f) => f.type === 'join_room' && f.data.roomId === room).length;
  s.client.joinRoom('r');
  s.last().receive('chat_history', { roomId: 'r', messages: [msg('r', id(1))], hasMore: false, unreadCount: 0 });
  s.client.joinRoom('r'); // a view mounts again: a join for a joined room, answered at once
  s.last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(1) });
  s.clock.advance(10000); // past its hold: it was answered, so it did not time out
  for (let k = 0; k < 3; k++) {
    s.client.joinRoom(`other${k}`); // another room, refused rate_limited once, then answered
    s.last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 1000 });
    s.clock.advance(1000);
    s.last().receive('chat_history', { roomId: `other${k}`, messages: [], hasMore: false, unreadCount: 0 });
    s.clock.advance(10000);
  }
  assert.equal(joinsOf('r'), 2);
});
