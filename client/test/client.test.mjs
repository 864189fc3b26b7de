// Unit tests of parley-client.js: run with `node --test client/test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ParleyConnectionError, backoffDelay, decodeJwtPayload, SERVER_TYPES } from '../parley-client.js';
import { fakeJwt, tick } from '../test-support/fakes.mjs';
import { URL_, connected, msg, setup } from '../test-support/harness.mjs';

// ---- connecting ------------------------------------------------------------

test('connect() opens the URL with ?token= and resolves on open', async () => {
  const { client, WS, events } = setup();
  const p = client.connect();
  assert.equal(WS.instances.length, 1);
  assert.equal(WS.instances[0].url, `${URL_}?token=tok`);
  assert.equal(client.state, 'connecting');
  WS.instances[0].open();
  await p;
  assert.equal(client.isConnected, true);
  assert.deepEqual(events.map((e) => e[0]), ['connect']);
});

test('a token is appended with & when the URL already has a query', () => {
  const { client, WS } = setup({ client: { url: `${URL_}?x=1`, token: 'a b' } });
  client.connect().catch(() => {});
  assert.equal(WS.instances[0].url, `${URL_}?x=1&token=a%20b`);
});

test('every server frame type reaches its listener and "*"', async () => {
  const { client, last, events } = await connected();
  const star = [];
  client.on('*', (type) => star.push(type));
  for (const t of SERVER_TYPES) last().receive(t, t === 'message_received' ? msg('r', '01A') : { x: t });
  assert.deepEqual(star, [...SERVER_TYPES]);
  assert.deepEqual(events.slice(1).map((e) => e[0]), [...SERVER_TYPES]);
  // off() removes a listener
  const seen = [];
  const fn = (d) => seen.push(d);
  client.on('pong', fn);
  client.off('pong', fn);
  last().receive('pong', { timestamp: 't' });
  assert.deepEqual(seen, []);
});

test('non-JSON and binary frames are ignored', async () => {
  const { last, events } = await connected();
  last().receiveRaw('not json');
  last().onmessage({ data: new ArrayBuffer(2) });
  assert.deepEqual(events.map((e) => e[0]), ['connect']);
});

// ---- 401: no retry ------------------------------------------------------------

test('a refused handshake (401) rejects connect() and is never retried', async () => {
  const { client, WS, clock, events } = setup();
  const p = client.connect();
  WS.instances[0].refuse(); // what a browser sees for HTTP 401: error + close 1006, no open
  await assert.rejects(p, (err) => err instanceof ParleyConnectionError && err.code === 'refused' && err.closeCode === 1006);
  clock.advance(24 * 3600 * 1000);
  await tick();
  assert.equal(WS.instances.length, 1, 'no second attempt');
  assert.equal(client.state, 'closed');
  assert.deepEqual(events.map((e) => e[0]), ['connect_error']);
  assert.deepEqual(clock.pending(), [], 'no timer left behind');
});

test('after a drop, an expired token stops the reconnect loop (401 not retried)', async () => {
  const token = fakeJwt({ sub: 'alice', exp: 100 }); // expires at t=100 s
  const { client, WS, clock, events, last } = await connected({ client: { token } });
  clock.advance(200 * 1000);
  last().drop(1001, 'Going away');
  // the reconnect timer fires, the token is known to be expired: no socket, connect_error
  clock.advance(60 * 1000);
  assert.equal(WS.instances.length, 1);
  assert.equal(client.state, 'closed');
  const err = events.find((e) => e[0] === 'connect_error')[1];
  assert.equal(err.code, 'unauthorized');
  clock.advance(3600 * 1000);
  assert.equal(WS.instances.length, 1);
});

test('a refused reconnect with an expired token is not retried', async () => {
  const token = fakeJwt({ sub: 'alice', exp: 100 });
  const { client, WS, clock, last } = await connected({ client: { token } });
  last().drop();
  clock.advance(1000); // first retry fires while the token is still valid
  assert.equal(WS.instances.length, 2);
  clock.now = 150 * 1000; // now past exp
  last().refuse();
  clock.advance(3600 * 1000);
  assert.equal(WS.instances.length, 2);
  assert.equal(client.state, 'closed');
});

test('tokenProvider is asked before every attempt; a failing provider stops', async () => {
  const tokens = ['t1', 't2'];
  const { client, WS, clock, events } = setup({ client: { token: null, tokenProvider: async () => tokens.shift() || null } });
  const p = client.connect();
  await tick();
  assert.equal(WS.instances[0].url, `${URL_}?token=t1`);
  WS.instances[0].open();
  await p;
  WS.instances[0].drop();
  clock.advance(1000);
  await tick();
  assert.equal(WS.instances[1].url, `${URL_}?token=t2`);
  WS.instances[1].refuse(); // server down: retried
  clock.advance(5000);
  await tick();
  assert.equal(WS.instances.length, 2, 'provider returned nothing: no socket');
  assert.equal(client.state, 'closed');
  assert.equal(events.filter((e) => e[0] === 'connect_error')[0][1].code, 'unauthorized');
});

test('retryInitialConnect retries a first attempt that never opened', async () => {
  const { client, WS, clock } = setup({ client: { retryInitialConnect: true } });
  const p = client.connect();
  WS.instances[0].refuse();
  clock.advance(1000);
  assert.equal(WS.instances.length, 2);
  WS.instances[1].open();
  await p;
  assert.equal(client.isConnected, true);
});

test('a handshake that hangs times out and rejects', async () => {
  const { client, WS, clock } = setup({ client: { connectTimeoutMs: 5000 } });
  const p = client.connect();
  clock.advance(5000);
  await assert.rejects(p, (err) => err.code === 'timeout');
  assert.ok(WS.instances[0].closedByClient);
  clock.advance(3600 * 1000);
  assert.equal(WS.instances.length, 1);
});

// ---- backoff -------------------------------------------------------------------

test('backoffDelay: full jitter under an exponential ceiling, capped', () => {
  const b = { initialMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(0, b, () => 0.999999), 99);
  assert.equal(backoffDelay(3, b, () => 0.5), 400);
  assert.equal(backoffDelay(4, b, () => 0.999999), 999); // 1600 capped at 1000
  assert.equal(backoffDelay(50, b, () => 0.999999), 999);
  assert.equal(backoffDelay(7, b, () => 0), 0);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(i % 12, b);
    assert.ok(d >= 0 && d < 1000);
  }
});

test('reconnects with exponential, jittered, capped delays and resets after open', async () => {
  const { client, WS, clock, events, last } = await connected({
    client: { backoff: { initialMs: 100, maxMs: 1000 } },
    randoms: Array(20).fill(0.999999),
  });
  last().drop(1006);
  const delays = [];
  for (let i = 0; i < 7; i++) {
    const r = events.filter((e) => e[0] === 'reconnecting').at(-1)[1];
    delays.push(r.delayMs);
    assert.equal(r.attempt, i + 1);
    assert.equal(client.reconnectAttempts, i + 1);
    clock.advance(r.delayMs - 1);
    assert.equal(WS.instances.length, i + 1, 'not before the delay');
    clock.advance(1);
    assert.equal(WS.instances.length, i + 2);
    last().refuse(); // gateway still down: keep trying
  }
  assert.deepEqual(delays, [99, 199, 399, 799, 999, 999, 999]);
  // success resets the attempt counter
  const r = events.filter((e) => e[0] === 'reconnecting').at(-1)[1];
  clock.advance(r.delayMs);
  last().open();
  assert.equal(client.isConnected, true);
  assert.equal(client.reconnectAttempts, 0);
  last().drop();
  assert.equal(events.filter((e) => e[0] === 'reconnecting').at(-1)[1].delayMs, 99);
});

test('close() stops reconnecting; reconnect:false does not reconnect', async () => {
  const a = await connected();
  a.last().drop();
  a.client.close();
  a.clock.advance(3600 * 1000);
  assert.equal(a.WS.instances.length, 1);
  assert.equal(a.client.state, 'closed');

  const b = await connected({ client: { reconnect: false } });
  b.last().drop(1001);
  b.clock.advance(3600 * 1000);
  assert.equal(b.WS.instances.length, 1);
  assert.equal(b.client.state, 'closed');
  assert.equal(b.events.find((e) => e[0] === 'disconnect')[1].willReconnect, false);
});

test('maxReconnectAttempts gives up', async () => {
  const { client, WS, clock, last, events } = await connected({ client: { maxReconnectAttempts: 2 } });
  last().drop();
  for (let i = 0; i < 5; i++) {
    clock.advance(60000);
    if (last().readyState === 0) last().refuse();
  }
  assert.equal(WS.instances.length, 3);
  assert.equal(client.state, 'closed');
  assert.equal(events.find((e) => e[0] === 'connect_error')[1].code, 'gave_up');
});

// ---- ping ------------------------------------------------------------------------

test('pings at least every 9 minutes, even when asked for less often', async () => {
  const { clock, last } = await connected({ client: { pingIntervalMs: 60 * 60 * 1000 } });
  clock.advance(9 * 60 * 1000);
  assert.deepEqual(last().frames(), [{ type: 'ping', data: {} }]);
  clock.advance(9 * 60 * 1000);
  assert.equal(last().frames().length, 2);
});

test('default ping period is under 9 minutes, and pings stop when closed', async () => {
  const { client, clock, last } = await connected();
  clock.advance(9 * 60 * 1000 - 1);
  assert.ok(last().frames().some((f) => f.type === 'ping'));
  client.close();
  const n = last().sent.length;
  clock.advance(60 * 60 * 1000);
  assert.equal(last().sent.length, n);
});

// ---- queue -----------------------------------------------------------------------

test('frames sent while disconnected are queued and flushed in order on open', async () => {
  const { client, WS } = setup();
  client.sendEcho('one');
  client.send('mark_read', { roomId: 'x', messageId: '01A' });
  client.setTyping('x', true); // ephemeral: not queued
  client.ping(); // not queued
  assert.equal(client.queuedCount, 2);
  const p = client.connect();
  WS.instances[0].open();
  await p;
  assert.deepEqual(WS.instances[0].frames(), [
    { type: 'message', data: { message: 'one' } },
    { type: 'mark_read', data: { roomId: 'x', messageId: '01A' } },
  ]);
  assert.equal(client.queuedCount, 0);
});

test('the queue is bounded: a send beyond maxQueue throws queue_full and keeps the rest', async () => {
  const { client, WS } = setup({ client: { maxQueue: 3 } });
  const overflow = [];
  client.on('queue_overflow', (f) => overflow.push(f));
  client.sendEcho(1);
  client.sendEcho(2);
  client.sendEcho(3);
  assert.throws(() => client.sendEcho(4), (err) => err.code === 'queue_full');
  assert.equal(overflow.length, 1);
  assert.equal(client.queuedCount, 3);
  const p = client.connect();
  WS.instances[0].open();
  await p;
  assert.deepEqual(WS.instances[0].frames().map((f) => f.data.message), [1, 2, 3]);
});

test('frames for a room wait until its rejoin is answered', async () => {
  const { client, last, clock } = await connected();
  client.joinRoom('lobby');
  last().receive('chat_history', { roomId: 'lobby', messages: [], hasMore: false });
  last().drop();
  client.sendChatMessage('lobby', 'while away');
  clock.advance(1000);
  last().open();
  // join first; the chat message is held until chat_history for the room
  assert.deepEqual(last().frames().map((f) => f.type), ['join_room']);
  last().receive('participants_list', { roomId: 'lobby', participants: [] });
  last().receive('chat_history', { roomId: 'lobby', messages: [], hasMore: false });
  assert.deepEqual(last().frames().map((f) => f.type), ['join_room', 'chat_message']);
});

test('held room frames go anyway after joinTimeoutMs', async () => {
  const { client, last, clock } = await connected({ client: { joinTimeoutMs: 2000 } });
  client.joinRoom('lobby');
  client.sendChatMessage('lobby', 'hi');
  assert.deepEqual(last().frames().map((f) => f.type), ['join_room']);
  clock.advance(2000);
  assert.deepEqual(last().frames().map((f) => f.type), ['join_room', 'chat_message']);
});

test('a join refused with rate_limited is sent again after retryAfterMs, as often as it is refused, and its room\'s frames wait for it', async () => {
  const { client, last, clock } = await connected({ client: { joinTimeoutMs: 2000 } });
  const types = () => last().frames().map((f) => f.type);
  client.joinRoom('lobby');
  client.sendChatMessage('lobby', 'hi');
  last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 6000 });
  clock.advance(5999);
  assert.deepEqual(types(), ['join_room']); // held past joinTimeoutMs: the join is still to come
  clock.advance(1);
  assert.deepEqual(last().frames(), [{ type: 'join_room', data: { roomId: 'lobby' } }, { type: 'join_room', data: { roomId: 'lobby' } }]);
  for (let n = 0; n < 10; n++) {
    last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 1000 });
    clock.advance(1000);
  }
  // The pause paces it: a refusal spends no retry, however many windows the allowance takes to come round.
  assert.deepEqual(types(), Array(12).fill('join_room'));
  last().receive('chat_history', { roomId: 'lobby', messages: [], hasMore: false, unreadCount: 0 });
  assert.deepEqual(types(), [...Array(12).fill('join_room'), 'chat_message']);
});

test('a join refused with internal_error is sent again five times in a row at most', async () => {
  const { client, last, clock } = await connected({ client: { joinTimeoutMs: 2000 } });
  const types = () => last().frames().map((f) => f.type);
  client.joinRoom('lobby');
  client.sendChatMessage('lobby', 'hi');
  for (let n = 0; n < 10; n++) {
    last().receive('error', { code: 'internal_error', message: 'x', requestType: 'join_room' });
    clock.advance(1000);
  }
  // Given up, the room's frames go joinTimeoutMs after the last one, as for a join never answered.
  assert.deepEqual(types(), [...Array(6).fill('join_room'), 'chat_message']);
});

test('a reconnect whose rejoins are rate limited sends the refused ones again, once each, and holds their frames till then', async () => {
  const { client, last, clock } = await connected({ client: { joinTimeoutMs: 1000, rejoinOverlapMs: 0 } });
  for (const room of ['a', 'b', 'c']) client.joinRoom(room);
  last().receive('chat_history', { roomId: 'a', messages: [msg('a', '01H000000000000000000000A0')], hasMore: false, unreadCount: 0 });
  last().receive('chat_history', { roomId: 'b', messages: [msg('b', '01H000000000000000000000B0')], hasMore: false, unreadCount: 0 });
  last().receive('chat_history', { roomId: 'c', messages: [], hasMore: false, unreadCount: 0 }); // nothing seen: rejoined without since
  last().drop(1006);
  clock.advance(1000);
  last().open();
  assert.deepEqual(last().frames().map((f) => [f.data.roomId, f.data.since]),
    [['a', '01H000000000000000000000A0'], ['b', '01H000000000000000000000B0'], ['c', undefined]]);
  client.sendChatMessage('c', 'back');
  // a's rejoin is answered; b's and c's are refused: the joins allowance of the window is spent
  last().receive('chat_history', { roomId: 'a', messages: [], hasMore: false, unreadCount: 0, since: '01H000000000000000000000A0' });
  for (let n = 0; n < 2; n++) last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 4000 });
  clock.advance(3999);
  assert.equal(last().frames().length, 3); // nothing more yet, and c's message is still held
  clock.advance(1);
  assert.deepEqual(last().frames().slice(3).map((f) => [f.type, f.data.roomId]), [['join_room', 'b'], ['join_room', 'c']]);
  last().receive('chat_history', { roomId: 'c', messages: [], hasMore: false, unreadCount: 0 });
  assert.deepEqual(last().frames().slice(5).map((f) => [f.type, f.data.message]), [['chat_message', 'back']]);
  last().receive('chat_history', { roomId: 'b', messages: [], hasMore: false, unreadCount: 0, since: '01H000000000000000000000B0' });
  last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'join_room', retryAfterMs: 1000 }); // late, about nothing awaited
  clock.advance(60000);
  assert.equal(last().frames().filter((f) => f.type === 'join_room').length, 5);
});

// ---- rejoin with since -------------------------------------------------------------

test('rejoins every room with since = 30 s before the newest messageId seen there', async () => {
  const { client, last, clock } = await connected();
  client.joinRoom('a');
  client.joinRoom('b');
  client.joinRoom('c');
  assert.deepEqual(last().frames(), [
    { type: 'join_room', data: { roomId: 'a' } },
    { type: 'join_room', data: { roomId: 'b' } },
    { type: 'join_room', data: { roomId: 'c' } },
  ]);
  last().receive('chat_history', { roomId: 'a', messages: [msg('a', '01H0000000000000000000000A'), msg('a', '01H0000000000000000000000B')], hasMore: false });
  last().receive('chat_history', { roomId: 'b', messages: [], hasMore: false });
  last().receive('message_received', msg('a', '01H0000000000000000000000D'));
  last().receive('message_received', msg('a', '01H0000000000000000000000C')); // out of order: D stays the newest
  last().receive('message_received', msg('b', '01H0000000000000000000000E'));
  client.leaveRoom('c');
  assert.equal(client.lastMessageId('a'), '01H0000000000000000000000D');

  last().drop(1001);
  clock.advance(1000);
  last().open();
  // 01H0000000 is 2023-05-09 10:13:00.032; 30 s before it, the smallest id of that millisecond
  assert.deepEqual(last().frames(), [
    { type: 'join_room', data: { roomId: 'a', since: '01GZZZZ2PG0000000000000000' } },
    { type: 'join_room', data: { roomId: 'b', since: '01GZZZZ2PG0000000000000000' } },
  ]);
});

test('a rejoin finds a message stored out of messageId order while it was away, and shows nothing twice', async () => {
  // Two senders: B's handler took its id after A's but stored it first; the socket dropped between.
  const { client, last, clock } = await connected();
  const shown = [];
  client.on('message_received', (m) => shown.push(m.messageId));
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  const A = '01H0000000000000000000000A', B = '01H0000000000000000000000B';
  last().receive('message_received', msg('r', B));
  last().drop(1006);
  clock.advance(1000);
  last().open();
  const [join] = last().frames();
  assert.equal(join.type, 'join_room');
  assert.ok(join.data.since < A, `since ${join.data.since} is after A`);
  const history = [];
  client.on('chat_history', (h) => history.push(...h.messages.map((m) => m.messageId)));
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', A), msg('r', B)], hasMore: false });
  assert.deepEqual(history, [A, B]); // the page as the server sent it
  assert.equal(client.lastMessageId('r'), B);
  last().receive('message_received', msg('r', B)); // and a late live copy of B is dropped
  assert.deepEqual(shown, [B]);
});

test('rejoinOverlapMs: 0 rejoins from the newest messageId itself; an id that is not a ULID is sent as it is', async () => {
  const { client, last, clock } = await connected({ client: { rejoinOverlapMs: 0 } });
  client.joinRoom('r');
  client.joinRoom('s');
  last().receive('message_received', msg('r', '01H0000000000000000000000D'));
  last().receive('message_received', msg('s', 'not-a-ulid'));
  last().drop(1006);
  clock.advance(1000);
  last().open();
  assert.deepEqual(last().frames(), [
    { type: 'join_room', data: { roomId: 'r', since: '01H0000000000000000000000D' } },
    { type: 'join_room', data: { roomId: 's', since: 'not-a-ulid' } },
  ]);
});

test('a rejoin pages on with get_history since until the room is caught up, and room frames wait only for the first page', async () => {
  const { client, last, clock } = await connected({ client: { rejoinOverlapMs: 0 } });
  // What the server sends: a join's answer counts unread; every answer to a `since` repeats it.
  const joined = (messages, hasMore, since) => ({ roomId: 'r', messages, hasMore, unreadCount: 0, unreadCapped: false, ...(since ? { since } : {}) });
  const page = (messages, hasMore, since) => ({ roomId: 'r', messages, hasMore, since });
  client.joinRoom('r', { limit: 2 });
  last().receive('chat_history', joined([msg('r', '01H000000000000000000000A0')], false));
  last().drop(1006);
  clock.advance(1000);
  last().open();
  client.sendChatMessage('r', 'back');
  client.getHistory('r', '01H000000000000000000000A0'); // older messages, asked for while rejoining
  assert.deepEqual(last().frames().map((f) => [f.type, f.data.since, f.data.limit]), [['join_room', '01H000000000000000000000A0', 2]]);
  last().receive('chat_history', joined([msg('r', '01H000000000000000000000A1'), msg('r', '01H000000000000000000000A2')], true, '01H000000000000000000000A0'));
  // the next page as a page of its own (no second join), the largest the server allows; the held frames go
  assert.deepEqual(last().frames().slice(1).map((f) => [f.type, f.data.since, f.data.limit]),
    [['get_history', '01H000000000000000000000A2', 100], ['chat_message', undefined, undefined], ['get_history', undefined, undefined]]);
  // get_history's answer of older messages (hasMore: older ones exist; no since) pages nothing on
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H0000000000000000000009Z')], hasMore: true });
  assert.equal(last().frames().length, 4);
  // nor does a page answering another since than the one asked for
  last().receive('chat_history', page([msg('r', '01H000000000000000000000A5')], true, '01H000000000000000000000A4'));
  assert.equal(last().frames().length, 4);
  last().receive('chat_history', page([msg('r', '01H000000000000000000000A3'), msg('r', '01H000000000000000000000A6')], true, '01H000000000000000000000A2'));
  assert.deepEqual(last().frames().slice(4).map((f) => [f.type, f.data.since]), [['get_history', '01H000000000000000000000A6']]);
  last().receive('chat_history', page([msg('r', '01H000000000000000000000A7')], false, '01H000000000000000000000A6'));
  assert.equal(last().frames().length, 5); // caught up: nothing more asked
  assert.equal(client.lastMessageId('r'), '01H000000000000000000000A7');
  // a page that does not move past its since (a misbehaving server) ends the catch-up
  last().drop(1006);
  clock.advance(1000);
  last().open();
  last().receive('chat_history', joined([msg('r', '01H000000000000000000000A7')], true, '01H000000000000000000000A7'));
  assert.deepEqual(last().frames().filter((f) => f.type === 'join_room' || f.type === 'get_history').length, 1); // (the unacknowledged 'back' goes again too)
});

/** Back from a drop, with the rejoin's first page (A1, A2) answered and more to fetch: the catch-up is under way. */
async function midCatchUp() {
  const { client, last, clock } = await connected({ client: { rejoinOverlapMs: 0 } });
  client.joinRoom('r', { limit: 2 });
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H000000000000000000000A0')], hasMore: false, unreadCount: 0 });
  last().drop(1006);
  clock.advance(1000);
  last().open();
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H000000000000000000000A1'), msg('r', '01H000000000000000000000A2')],
    hasMore: true, unreadCount: 9, since: '01H000000000000000000000A0' });
  return { client, last, clock };
}

test('a drop in the middle of a catch-up rejoins from where it had got to, not from a live message past it', async () => {
  const { client, last, clock } = await midCatchUp();
  last().receive('message_received', msg('r', '01H000000000000000000000B0')); // live, while A3.. are still to be fetched
  last().drop(1006);
  clock.advance(5000);
  last().open();
  assert.deepEqual(last().frames()[0], { type: 'join_room', data: { roomId: 'r', since: '01H000000000000000000000A2', limit: 2 } });
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H000000000000000000000A3')], hasMore: false, unreadCount: 8, since: '01H000000000000000000000A2' });
  last().drop(1006); // caught up: the next rejoin is from the newest seen again
  clock.advance(5000);
  last().open();
  assert.equal(last().frames()[0].data.since, '01H000000000000000000000B0');
});

test('a catch-up page refused rate_limited is asked again after each retryAfterMs, however many windows it takes', async () => {
  const { last, clock } = await midCatchUp();
  const pages = () => last().frames().filter((f) => f.type === 'get_history');
  for (let n = 0; n < 8; n++) { // a reconnect in many rooms: the signals allowance is spent for several windows
    last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'get_history', retryAfterMs: 10000 });
    clock.advance(9999);
    assert.equal(pages().length, 1 + n); // not before its retryAfterMs
    clock.advance(1);
    assert.equal(pages().length, 2 + n);
  }
});

test('a catch-up page refused for a reason that may pass is asked again, a few times at most', async () => {
  const { client, last, clock } = await midCatchUp();
  const pages = () => last().frames().filter((f) => f.type === 'get_history');
  const page = { type: 'get_history', data: { roomId: 'r', since: '01H000000000000000000000A2', limit: 100 } };
  assert.deepEqual(pages(), [page]);
  last().receive('error', { code: 'validation_error', message: 'x', requestType: 'get_history' });
  clock.advance(60000);
  assert.equal(pages().length, 1); // a refusal that will not pass is not asked again
  last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'get_history', retryAfterMs: 2500 });
  clock.advance(2000);
  assert.equal(pages().length, 1);
  clock.advance(500);
  assert.deepEqual(pages(), [page, page]); // after its retryAfterMs
  for (let n = 0; n < 10; n++) {
    last().receive('error', { code: 'internal_error', message: 'x', requestType: 'get_history' });
    clock.advance(1000);
  }
  assert.equal(pages().length, 7); // five in a row at most (the rate_limited one spent none)
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H000000000000000000000A3')], hasMore: false, since: '01H000000000000000000000A2' });
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H000000000000000000000A3')], hasMore: false, since: '01H000000000000000000000A2' });
  last().receive('error', { code: 'internal_error', message: 'x', requestType: 'get_history' });
  clock.advance(60000);
  assert.equal(pages().length, 7); // answered (twice: taken once): nothing awaited, nothing asked again
  assert.equal(client.lastMessageId('r'), '01H000000000000000000000A3');
});

test('a rejoin whose answer says moreChanged reads the pages seen before it again, oldest first, up to its since', async () => {
  const { client, last, clock } = await connected({ client: { rejoinOverlapMs: 0 } });
  const id = (n) => `01H0000000000000000000${n}`;
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id('00A0')), msg('r', id('00A1'))], hasMore: true, unreadCount: 0 });
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id('0090'))], hasMore: false }); // an older page (before)
  last().receive('message_received', msg('r', id('00A2')));
  last().drop(1006);
  clock.advance(1000);
  last().open();
  const reads = () => last().frames().filter((f) => f.type === 'get_history').map((f) => f.data);
  // An answer without moreChanged (or a server that sends no changes) reads nothing again.
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: id('00A2'), changed: [], moreChanged: false });
  assert.deepEqual(reads(), []);
  last().drop(1006);
  clock.advance(1000);
  last().open();
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id('00A3'))], hasMore: false, unreadCount: 0, since: id('00A2'),
    changed: [msg('r', id('00A0'))], moreChanged: true });
  // From just before the oldest seen (a millisecond earlier), the largest page.
  assert.deepEqual(reads(), [{ roomId: 'r', since: '01GZZZZZZZ0000000000000000', limit: 100 }]);
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id('0090')), msg('r', id('00A0'))], hasMore: true, since: '01GZZZZZZZ0000000000000000' });
  assert.deepEqual(reads().slice(1), [{ roomId: 'r', since: id('00A0'), limit: 100 }]);
  last().receive('error', { code: 'rate_limited', message: 'x', requestType: 'get_history', retryAfterMs: 500 });
  clock.advance(500);
  assert.deepEqual(reads().slice(1), [{ roomId: 'r', since: id('00A0'), limit: 100 }, { roomId: 'r', since: id('00A0'), limit: 100 }]);
  // A page reaching the rejoin's since ends it, even with hasMore (the catch-up has those).
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', id('00A1')), msg('r', id('00A2'))], hasMore: true, since: id('00A0') });
  assert.equal(reads().length, 3);
  assert.equal(client.lastMessageId('r'), id('00A3'));
});

test('a message deleted while its send was unanswered is acknowledged by its tombstone, which carries its clientMessageId', async () => {
  const { client, last, clock } = await connected({ client: { rejoinOverlapMs: 0 } });
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0 });
  const cmid = client.sendChatMessage('r', 'oops');
  last().drop(1006); // stored, then the socket dropped before the answer; a moderator deleted it meanwhile
  clock.advance(1000);
  last().open();
  const tombstone = { messageId: '01H000000000000000000000A1', roomId: 'r', userId: 'alice', name: 'A', timestamp: 't', version: 2,
    clientMessageId: cmid, deleted: true, deletedBy: 'mod', deletedAt: 't' };
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false, unreadCount: 0, since: '01H0000000000000000000009Z' });
  assert.deepEqual(last().frames().slice(1).map((f) => [f.type, f.data.clientMessageId]), [['chat_message', cmid]]); // sent again
  last().receive('message_received', tombstone); // the duplicate's echo: the message as it stands
  client.sendChatMessage('r', 'next');
  assert.deepEqual(last().frames().slice(2).map((f) => [f.type, f.data.message]), [['chat_message', 'next']]); // not held 30 s behind it
});

test('a server that does not repeat since is paged on with joins, as it expects', async () => {
  const { client, last, clock } = await connected({ client: { rejoinOverlapMs: 0 } });
  const joined = (messages, hasMore) => ({ roomId: 'r', messages, hasMore, unreadCount: 0, unreadCapped: false });
  client.joinRoom('r', { limit: 2 });
  last().receive('chat_history', joined([msg('r', '01H000000000000000000000A0')], false));
  last().drop(1006);
  clock.advance(1000);
  last().open();
  last().receive('chat_history', joined([msg('r', '01H000000000000000000000A1'), msg('r', '01H000000000000000000000A2')], true));
  assert.deepEqual(last().frames().map((f) => [f.type, f.data.since, f.data.limit]),
    [['join_room', '01H000000000000000000000A0', 2], ['join_room', '01H000000000000000000000A2', 100]]);
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01H0000000000000000000009Z')], hasMore: true }); // older: nothing
  last().receive('chat_history', joined([msg('r', '01H000000000000000000000A3')], false));
  assert.equal(last().frames().length, 2);
});

test('rejoinOverlapMs must be a whole number of milliseconds', () => {
  for (const bad of [1.5, -1, '30000', NaN]) {
    assert.throws(() => setup({ client: { rejoinOverlapMs: bad } }), (e) => e.code === 'invalid_options', String(bad));
  }
});

test('rooms joined while disconnected are joined on open; left rooms are not', async () => {
  const { client, WS } = setup();
  client.joinRoom('x');
  client.joinRoom('y');
  client.leaveRoom('y');
  const p = client.connect();
  WS.instances[0].open();
  await p;
  assert.deepEqual(WS.instances[0].frames(), [{ type: 'join_room', data: { roomId: 'x' } }]);
});

test('sendMessage({type:"join_room"}) (the seed format) registers the room for rejoin', async () => {
  const { client, last } = await connected();
  client.sendMessage({ type: 'join_room', data: { roomId: 'seed', userId: 'ignored' } });
  assert.deepEqual(client.rooms, ['seed']);
  assert.deepEqual(last().frames(), [{ type: 'join_room', data: { roomId: 'seed' } }]);
});

test('an invalid roomId is refused locally', () => {
  const { client } = setup();
  assert.throws(() => client.joinRoom('bad room!'), (e) => e.code === 'invalid_room');
});

// ---- no duplicates --------------------------------------------------------------------

test('sendChatMessage returns the clientMessageId it generated', async () => {
  const { client, last } = await connected();
  const id = client.sendChatMessage('r', 'hello');
  assert.equal(id, 'cmid-1');
  assert.deepEqual(last().frames(), [{ type: 'chat_message', data: { roomId: 'r', message: 'hello', clientMessageId: 'cmid-1' } }]);
  assert.deepEqual(client.pendingClientMessageIds, ['cmid-1']);
});

test('an unacknowledged chat_message is re-sent after a reconnect with the same clientMessageId, once', async () => {
  const { client, last, clock } = await connected();
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  const id = client.sendChatMessage('r', 'hello');
  last().drop(); // dropped before the server's message_received came back
  clock.advance(1000);
  last().open();
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  const chats = last().frames().filter((f) => f.type === 'chat_message');
  assert.deepEqual(chats, [{ type: 'chat_message', data: { roomId: 'r', message: 'hello', clientMessageId: id } }]);
  // acknowledged now: never sent again
  last().receive('message_received', msg('r', '01B', { userId: 'alice', clientMessageId: id }));
  assert.deepEqual(client.pendingClientMessageIds, []);
  last().drop();
  clock.advance(1000);
  last().open();
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  assert.equal(last().frames().filter((f) => f.type === 'chat_message').length, 0);
});

test('a message found in the rejoin history is not re-sent', async () => {
  const { client, last, clock } = await connected();
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  const id = client.sendChatMessage('r', 'hello');
  last().drop();
  clock.advance(1000);
  last().open();
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01C', { clientMessageId: id })], hasMore: false });
  assert.equal(last().frames().filter((f) => f.type === 'chat_message').length, 0);
});

test('a message queued while disconnected is sent once, not twice', async () => {
  const { client, WS } = setup();
  const id = client.sendChatMessage('r', 'offline');
  const p = client.connect();
  WS.instances[0].open();
  await p;
  assert.deepEqual(WS.instances[0].frames().filter((f) => f.type === 'chat_message').map((f) => f.data.clientMessageId), [id]);
});

test('a chat_message refused by validation is not retried', async () => {
  const { client, last, clock } = await connected();
  const id = client.sendChatMessage('r', '');
  last().receive('error', { code: 'validation_error', message: 'bad', requestType: 'chat_message', clientMessageId: id });
  assert.deepEqual(client.pendingClientMessageIds, []);
  last().drop();
  clock.advance(1000);
  last().open();
  assert.equal(last().frames().length, 0);
});

test('rate_limited: the same frame is re-sent after retryAfterMs', async () => {
  const { client, last, clock } = await connected();
  const id = client.sendChatMessage('r', 'hi');
  last().receive('error', { code: 'rate_limited', message: 'slow down', clientMessageId: id, retryAfterMs: 500 });
  clock.advance(499);
  assert.equal(last().frames().length, 1);
  clock.advance(1);
  assert.deepEqual(last().frames().map((f) => f.data.clientMessageId), [id, id]);
});

test('message_received is deduplicated by messageId', async () => {
  const { client, last, events, clock } = await connected();
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01A')], hasMore: false });
  last().receive('message_received', msg('r', '01A')); // already in history
  last().receive('message_received', msg('r', '01B'));
  last().receive('message_received', msg('r', '01B')); // server retry echo
  last().drop();
  clock.advance(1000);
  last().open();
  last().receive('chat_history', { roomId: 'r', messages: [msg('r', '01C')], hasMore: false });
  last().receive('message_received', msg('r', '01C'));
  const got = events.filter((e) => e[0] === 'message_received').map((e) => e[1].messageId);
  assert.deepEqual(got, ['01B']);
  // the same messageId in another room is a different message
  last().receive('message_received', msg('other', '01B'));
  assert.equal(events.filter((e) => e[0] === 'message_received').length, 2);
});

// ---- misc ------------------------------------------------------------------------

test('decodeJwtPayload reads a payload and rejects garbage', () => {
  assert.deepEqual(decodeJwtPayload(fakeJwt({ sub: 'a', exp: 5 })), { sub: 'a', exp: 5 });
  assert.equal(decodeJwtPayload('nope'), null);
  assert.equal(decodeJwtPayload(null), null);
});

test('frame events log every frame in and out', async () => {
  const { client, last } = await connected();
  const log = [];
  client.on('frame', (f) => log.push(f));
  client.sendEcho('x');
  last().receive('message_response', { status: 'received', message: 'x', timestamp: 't' });
  client.sendRaw('{"type":"nope"}');
  assert.deepEqual(log.map((f) => f.direction), ['out', 'in', 'out']);
  assert.equal(log[2].raw, '{"type":"nope"}');
});

test('a throwing listener does not break the client', async () => {
  const { client, last } = await connected();
  const orig = console.error;
  console.error = () => {};
  try {
    client.on('pong', () => {
      throw new Error('boom');
    });
    let ok = false;
    client.on('pong', () => (ok = true));
    last().receive('pong', { timestamp: 't' });
    assert.equal(ok, true);
  } finally {
    console.error = orig;
  }
});

test('connect() while connected resolves at once; connect() after close() reconnects and rejoins', async () => {
  const { client, WS, last } = await connected();
  await client.connect();
  assert.equal(WS.instances.length, 1);
  client.joinRoom('r');
  last().receive('message_received', msg('r', '01Z'));
  client.close();
  const p = client.connect();
  last().open();
  await p;
  assert.deepEqual(last().frames(), [{ type: 'join_room', data: { roomId: 'r', since: '01Z' } }]);
});

test('unacknowledged chat messages are bounded too', async () => {
  const { client } = await connected({ client: { maxQueue: 2 } });
  client.sendChatMessage('r', 'a');
  client.sendChatMessage('r', 'b');
  assert.throws(() => client.sendChatMessage('r', 'c'), (e) => e.code === 'queue_full');
  assert.equal(client.pendingClientMessageIds.length, 2);
});

test('a socket already closing gets no frames: they are queued for the next one', async () => {
  const { client, last, clock } = await connected();
  last().readyState = 2; // CLOSING, close event not delivered yet
  client.sendEcho('late');
  assert.equal(last().sent.length, 0);
  last().drop();
  clock.advance(1000);
  last().open();
  assert.deepEqual(last().frames(), [{ type: 'message', data: { message: 'late' } }]);
});

// ---- issue 13: edits, deletions, reactions, rooms, DMs -----------------------

test('editMessage, deleteMessage, react and getRooms send the documented frames', async () => {
  const { client, last } = await connected();
  client.joinRoom('lobby');
  last().receive('chat_history', { roomId: 'lobby', messages: [], hasMore: false, unreadCount: 0, unreadCapped: false });
  last().sent.length = 0;
  client.editMessage('lobby', '01JCGW5Z8Q6V3R2N1M0K9J8H7G', 'fixed');
  client.deleteMessage('lobby', '01JCGW5Z8Q6V3R2N1M0K9J8H7G');
  client.react('lobby', '01JCGW5Z8Q6V3R2N1M0K9J8H7G', '👍');
  client.react('lobby', '01JCGW5Z8Q6V3R2N1M0K9J8H7G', '👍', { remove: true });
  client.getRooms();
  client.getRooms({ limit: 5, cursor: 'c' });
  assert.deepEqual(last().frames(), [
    { type: 'edit_message', data: { roomId: 'lobby', messageId: '01JCGW5Z8Q6V3R2N1M0K9J8H7G', message: 'fixed' } },
    { type: 'delete_message', data: { roomId: 'lobby', messageId: '01JCGW5Z8Q6V3R2N1M0K9J8H7G' } },
    { type: 'react', data: { roomId: 'lobby', messageId: '01JCGW5Z8Q6V3R2N1M0K9J8H7G', emoji: '👍' } },
    { type: 'react', data: { roomId: 'lobby', messageId: '01JCGW5Z8Q6V3R2N1M0K9J8H7G', emoji: '👍', remove: true } },
    { type: 'get_rooms', data: {} },
    { type: 'get_rooms', data: { limit: 5, cursor: 'c' } },
  ]);
});

test('get_rooms does not wait for any room; the new server frames reach their listeners', async () => {
  const { client, last, events } = await connected();
  client.getRooms();
  assert.deepEqual(last().frames().at(-1), { type: 'get_rooms', data: {} });
  const frames = {
    message_updated: { roomId: 'r', messageId: 'm', message: 'x', editedAt: 't' },
    message_deleted: { roomId: 'r', messageId: 'm', deletedBy: 'ann' },
    reaction_update: { roomId: 'r', messageId: 'm', userId: 'ann', emoji: '👍', action: 'added', counts: { '👍': 1 } },
    rooms_list: { rooms: [], nextCursor: null },
  };
  for (const [type, data] of Object.entries(frames)) last().receive(type, data);
  assert.deepEqual(events.filter(([t]) => t in frames), Object.entries(frames));
});

test('dmRoomId sorts the two users and refuses what the server refuses', async () => {
  const { dmRoomId } = await import('../parley-client.js');
  assert.equal(dmRoomId('bob', 'ann'), 'dm:ann:bob');
  assert.equal(dmRoomId('ann', 'bob'), 'dm:ann:bob');
  assert.equal(dmRoomId('Zed', 'ann'), 'dm:Zed:ann'); // code-unit order, as the server compares
  for (const [a, b] of [['ann', 'ann'], ['', 'bob'], ['a:b', 'c']]) assert.throws(() => dmRoomId(a, b), TypeError);
});

test('userId is the token\'s sub', () => {
  const { client } = setup({ client: { token: fakeJwt({ sub: 'ann', exp: 9e9 }) } });
  assert.equal(client.userId, 'ann');
  client.token = null;
  assert.equal(client.userId, null);
});
