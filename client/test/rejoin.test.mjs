// The rejoin after a reconnect: a re-read of older pages that goes on across a drop and is bounded
// by what the client remembers, a seen set that keeps the recent ids, and joins paced so that a
// user in hundreds of rooms (from several tabs) stays below the server's joins flood line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rewindMessageId } from '../lib/ids.js';
import { connected, messageIdAt, msg, setup } from '../test-support/harness.mjs';

const id = messageIdAt;
const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);
const page = (from, to) => range(from, to).map((n) => msg('r', id(n)));

async function reconnect({ last, clock }) {
  last().drop(1006);
  clock.advance(1000);
  last().open();
}

test('a re-read cut short by a dropped socket goes on from the page it had got to once the next rejoin is answered', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0 } });
  const { client, last } = s;
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: page(0, 300), hasMore: false, unreadCount: 0 });
  await reconnect(s);
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(299), changed: [], moreChanged: true });
  const reads = () => last().frames().filter((f) => f.type === 'get_history').map((f) => f.data.since);
  const start = rewindMessageId(id(0), 1);
  assert.deepEqual(reads(), [start]);
  last().receive('chat_history', { roomId: 'r', messages: page(0, 100), hasMore: true, since: start });
  assert.deepEqual(reads(), [start, id(99)]);
  await reconnect(s); // the page from id(99) is never answered
  await reconnect(s); // and the next rejoin is not answered either
  assert.deepEqual(reads(), []); // nothing before the rejoin's answer
  last().receive('message_received', msg('r', id(400)));
  const join = last().frames().find((f) => f.type === 'join_room');
  assert.equal(join.data.since, id(299));
  // No moreChanged: this rejoin's changes start at its since; the first absence's are still to read.
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(299), changed: [], moreChanged: false });
  assert.deepEqual(reads(), [id(99)]);
  last().receive('chat_history', { roomId: 'r', messages: page(100, 200), hasMore: true, since: id(99) });
  last().receive('chat_history', { roomId: 'r', messages: page(200, 300), hasMore: true, since: id(199) });
  assert.deepEqual(reads(), [id(99), id(199)]); // up to the first rejoin's since: done
  await reconnect(s);
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(400), changed: [], moreChanged: false });
  s.clock.advance(60000);
  assert.deepEqual(reads(), []); // a finished re-read is not done again
});

test('a re-read starts at the oldest message the client still remembers, at most 20 pages, and its copies reach the app', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0 } });
  const { client, last, events } = s;
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: page(0, 2500), hasMore: false, unreadCount: 0 });
  await reconnect(s);
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id(2499), changed: [], moreChanged: true });
  const reads = () => last().frames().filter((f) => f.type === 'get_history').map((f) => f.data);
  // 2000 ids are remembered (id(500)..id(2499)): not from id(0), 25 pages back.
  assert.deepEqual(reads(), [{ roomId: 'r', since: rewindMessageId(id(500), 1), limit: 100 }]);
  const before = events.filter(([t]) => t === 'chat_history').length;
  for (let n = 500; n < 2500; n += 100) {
    const asked = reads().at(-1);
    assert.equal(asked.since, n === 500 ? rewindMessageId(id(500), 1) : id(n - 1));
    last().receive('chat_history', { roomId: 'r', messages: page(n, n + 100), hasMore: true, since: asked.since });
  }
  assert.equal(reads().length, 20);
  // Every page reaches chat_history listeners whole, though each of its messages had been seen.
  const pages = events.filter(([t]) => t === 'chat_history').slice(before);
  assert.equal(pages.length, 20);
  assert.deepEqual(pages[0][1].messages.map((m) => m.messageId), range(500, 600).map(id));
});

test('old pages never push the recent ids out of the seen set: a duplicate of a recent message is still dropped', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 0 } });
  const { client, last, events } = s;
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: page(2000, 4000), hasMore: true, unreadCount: 0 });
  for (let n = 1900; n >= 0; n -= 100) {
    client.getHistory('r', id(n + 100), { limit: 100 });
    last().receive('chat_history', { roomId: 'r', messages: page(n, n + 100), hasMore: n > 0 });
  }
  const received = () => events.filter(([t]) => t === 'message_received').map(([, d]) => d.messageId);
  last().receive('message_received', msg('r', id(3999))); // a server retry's second broadcast
  last().receive('message_received', msg('r', id(2000)));
  assert.deepEqual(received(), []);
  last().receive('message_received', msg('r', id(4000)));
  assert.deepEqual(received(), [id(4000)]);
  assert.equal(client.lastMessageId('r'), id(4000));
});

/**
 * A server with the joins allowance (100 per user per 10 s window, `rate_limited` with the rest of the
 * window as retryAfterMs beyond it): answers every frame sent since its last turn, then lets 100 ms
 * pass when nothing new came. Returns what it saw.
 */
function serveJoins({ last, clock }, { until = 60000, allowance = 100, windowMs = 10000 } = {}) {
  const seen = { attempts: new Map(), joined: new Set(), maxBatch: 0, answeredAt: new Map() };
  let done = 0;
  while (clock.now < until) {
    const frames = last().frames().slice(done);
    done += frames.length;
    const joins = frames.filter((f) => f.type === 'join_room');
    seen.maxBatch = Math.max(seen.maxBatch, joins.length); // all unanswered: this server answers each turn
    for (const f of joins) {
      const w = Math.floor(clock.now / windowMs);
      const n = (seen.attempts.get(w) || 0) + 1;
      seen.attempts.set(w, n);
      if (n <= allowance) {
        seen.joined.add(f.data.roomId);
        seen.answeredAt.set(f.data.roomId, last().frames().length);
        last().receive('chat_history', { roomId: f.data.roomId, messages: [], hasMore: false, unreadCount: 0 });
      } else {
        last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: (w + 1) * windowMs - clock.now });
      }
    }
    if (!frames.length) clock.advance(100);
  }
  return seen;
}

test('a reconnect in 350 rooms keeps at most 20 joins unanswered, stops at a refusal until retryAfterMs, and joins them all', async () => {
  const s = setup({ client: { joinTimeoutMs: 10000, rejoinOverlapMs: 0 } });
  const rooms = range(0, 350).map((n) => `room${n}`);
  for (const room of rooms) s.client.joinRoom(room);
  s.client.sendChatMessage('room349', 'hi');
  const p = s.client.connect();
  await new Promise((r) => setImmediate(r));
  s.last().open();
  await p;
  const seen = serveJoins(s);
  assert.ok(seen.maxBatch <= 20, `${seen.maxBatch} joins unanswered at once`);
  // Each window: the allowance, then the joins already in flight when the first refusal came back.
  for (const [w, n] of seen.attempts) assert.ok(n <= 120, `${n} joins in window ${w}`);
  assert.equal(seen.joined.size, 350);
  const frames = s.last().frames();
  const chat = frames.findIndex((f) => f.type === 'chat_message');
  assert.ok(chat >= seen.answeredAt.get('room349'), 'the held message waited for its room\'s join');
  assert.equal(frames.filter((f) => f.type === 'chat_message').length, 1);
});

test('a queued room holds its frames until joinTimeoutMs after its join was sent, not after the reconnect', async () => {
  const s = setup({ client: { joinTimeoutMs: 1000 } });
  const { client, last, clock } = s;
  for (const n of range(0, 30)) client.joinRoom(`room${n}`);
  client.sendChatMessage('room29', 'hi');
  const p = client.connect();
  await new Promise((r) => setImmediate(r));
  last().open();
  await p;
  const joins = () => last().frames().filter((f) => f.type === 'join_room').map((f) => f.data.roomId);
  const chats = () => last().frames().filter((f) => f.type === 'chat_message');
  assert.deepEqual(joins(), range(0, 20).map((n) => `room${n}`));
  clock.advance(1000); // the server never answers: the first 20 time out and give their places
  assert.deepEqual(joins().slice(20), range(20, 30).map((n) => `room${n}`));
  assert.deepEqual(chats(), []);
  clock.advance(999);
  assert.deepEqual(chats(), []);
  clock.advance(1);
  assert.equal(chats().length, 1);
});

test('a join refused rate_limited stops new joins until retryAfterMs, then sends the refused one again first', async () => {
  const s = setup({ client: { joinTimeoutMs: 10000 } });
  const { client, last, clock } = s;
  for (const n of range(0, 60)) client.joinRoom(`room${n}`);
  const p = client.connect();
  await new Promise((r) => setImmediate(r));
  last().open();
  await p;
  const joins = () => last().frames().filter((f) => f.type === 'join_room').map((f) => f.data.roomId);
  for (const n of range(0, 19)) last().receive('chat_history', { roomId: `room${n}`, messages: [], hasMore: false, unreadCount: 0 });
  last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 4000 });
  assert.equal(joins().length, 20 + 19); // 19 answered: 19 more sent before the refusal
  last().receive('chat_history', { roomId: 'room20', messages: [], hasMore: false, unreadCount: 0 });
  clock.advance(3999);
  assert.equal(joins().length, 39); // an answer frees a place, but the window's allowance is spent
  clock.advance(1);
  // The unanswered joins again (room19, room21..room38), then the queue goes on with the one place left.
  assert.deepEqual(joins().slice(39), ['room19', ...range(21, 39).map((n) => `room${n}`), 'room39']);
});

test('joinRoom mid catch-up: the catch-up page is still awaited and paged on, and the app\'s join is still retried', async () => {
  const s = await connected({ client: { rejoinOverlapMs: 30000 } });
  const { client, last, clock } = s;
  const sent = (type) => last().frames().filter((f) => f.type === type);
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id(10))], hasMore: false, unreadCount: 0 });
  await reconnect(s);
  const rejoin = sent('join_room').at(-1);
  last().receive('chat_history', { roomId: 'r', messages: page(11, 61), hasMore: true, unreadCount: 0, since: rejoin.data.since });
  assert.equal(sent('get_history').at(-1).data.since, id(60));
  client.joinRoom('r'); // a view mounts for it
  const join = sent('join_room').at(-1);
  assert.notEqual(join, rejoin);
  last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 500 });
  last().receive('chat_history', { roomId: 'r', messages: page(61, 161), hasMore: true, since: id(60) });
  assert.equal(sent('get_history').at(-1).data.since, id(160)); // the catch-up goes on
  clock.advance(500);
  assert.deepEqual(sent('join_room').at(-1).data, join.data); // the refused join goes again
  assert.equal(sent('join_room').length, 3);
});
