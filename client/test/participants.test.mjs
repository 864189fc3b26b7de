// A room's participants and count (issue 12): participants(roomId), loadMoreParticipants, the
// `participants` event, driven through the fake socket. Run with `node --test client/test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ParleyError } from '../parley-client.js';
import { tick } from '../test-support/fakes.mjs';
import { connected } from '../test-support/harness.mjs';

const people = (...ids) => ids.map((id) => ({ userId: id, name: id.toUpperCase() }));
const ids = (snap) => snap.participants.map((p) => p.userId);
const sentOf = (ws, type) => ws.frames().filter((f) => f.type === type);

/** A connected client in `roomId`, answered with `first` (a participants_list) and an empty history. */
async function inRoom(roomId, first, opts) {
  const s = await connected(opts);
  const changes = [];
  s.client.on('participants', (snap) => changes.push(snap));
  s.client.joinRoom(roomId);
  s.last().receive('participants_list', { roomId, ...first });
  s.last().receive('chat_history', { roomId, messages: [], hasMore: false });
  return { ...s, changes };
}

const refusal = (code) => (err) => err instanceof ParleyError && err.code === code && /participant|joinRoom|joined/.test(err.message);

// ---- the first page ----------------------------------------------------------

test("a join's participants_list is the room's list and count, and fires `participants`", async () => {
  const { client, changes } = await inRoom('hall', { participants: people('bob', 'ann'), count: 2 });
  const snap = client.participants('hall');
  assert.deepEqual(snap, { roomId: 'hall', participants: [{ userId: 'ann', name: 'ANN' }, { userId: 'bob', name: 'BOB' }], count: 2, hasMore: false, loading: false });
  assert.equal(changes.at(-1), snap, 'the event carries the same snapshot participants() returns');
  assert.equal(client.participants('hall'), snap, 'unchanged state keeps the same object');
});

test('a room this client is not in has no participants', async () => {
  const { client } = await connected();
  assert.deepEqual(client.participants('elsewhere'), { roomId: 'elsewhere', participants: [], count: 0, hasMore: false, loading: false });
  assert.throws(() => client.loadMoreParticipants('elsewhere'), refusal('not_joined'));
});

// ---- paging --------------------------------------------------------------------

test('loadMoreParticipants sends the last nextCursor, appends the page, and refuses when nothing is left', async () => {
  const { client, last } = await inRoom('big', { participants: people('a', 'b'), count: 4, nextCursor: 'C1' });
  assert.equal(client.participants('big').hasMore, true);
  client.loadMoreParticipants('big', { limit: 2 });
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'big', cursor: 'C1', limit: 2 });
  assert.equal(client.participants('big').loading, true);
  last().receive('participants_list', { roomId: 'big', participants: people('b', 'c'), count: 4, nextCursor: 'C2' });
  assert.deepEqual(ids(client.participants('big')), ['a', 'b', 'c'], 'appended, b not twice');
  client.loadMoreParticipants('big');
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'big', cursor: 'C2' });
  last().receive('participants_list', { roomId: 'big', participants: people('d'), count: 4 });
  const snap = client.participants('big');
  assert.deepEqual([ids(snap), snap.count, snap.hasMore, snap.loading], [['a', 'b', 'c', 'd'], 4, false, false]);
  assert.throws(() => client.loadMoreParticipants('big'), refusal('no_more_participants'));
  assert.equal(sentOf(last(), 'get_participants').length, 2);
});

test('a second loadMoreParticipants while a page is on its way is refused, and so is one before the join is answered', async () => {
  const { client, last } = await inRoom('big', { participants: people('a'), count: 3, nextCursor: 'C1' });
  client.loadMoreParticipants('big');
  assert.throws(() => client.loadMoreParticipants('big'), refusal('participants_loading'));
  assert.equal(sentOf(last(), 'get_participants').length, 1);

  client.joinRoom('other');
  assert.throws(() => client.loadMoreParticipants('other'), refusal('participants_loading'), 'its first page comes with the join');
});

test("loadMoreParticipants on the join's first page (before its chat_history) waits for the join, then goes", async () => {
  const { client, last } = await connected();
  client.joinRoom('big');
  client.on('participants', (snap) => {
    if (snap.hasMore && !snap.loading) client.loadMoreParticipants('big');
  });
  last().receive('participants_list', { roomId: 'big', participants: people('a'), count: 2, nextCursor: 'C1' });
  assert.equal(client.participants('big').loading, true);
  assert.equal(sentOf(last(), 'get_participants').length, 0, 'not before the join is answered (not_a_member otherwise)');
  last().receive('chat_history', { roomId: 'big', messages: [], hasMore: false });
  assert.deepEqual(sentOf(last(), 'get_participants').map((f) => f.data), [{ roomId: 'big', cursor: 'C1' }]);
  last().receive('participants_list', { roomId: 'big', participants: people('b'), count: 2 });
  assert.deepEqual([ids(client.participants('big')), client.participants('big').hasMore], [['a', 'b'], false]);
});

test('while disconnected loadMoreParticipants is refused (the rejoin brings the first page)', async () => {
  const { client, last, WS } = await inRoom('big', { participants: people('a'), count: 3, nextCursor: 'C1' });
  last().drop(1006);
  assert.throws(() => client.loadMoreParticipants('big'), refusal('not_ready'));
  assert.equal(WS.instances.flatMap((w) => sentOf(w, 'get_participants')).length, 0);
});

test('pages of two rooms go one at a time (an error frame names no room), the second when the first is answered', async () => {
  const { client, last } = await inRoom('r1', { participants: people('a'), count: 2, nextCursor: 'X1' });
  client.joinRoom('r2');
  last().receive('participants_list', { roomId: 'r2', participants: people('m'), count: 2, nextCursor: 'Y1' });
  last().receive('chat_history', { roomId: 'r2', messages: [], hasMore: false });
  client.loadMoreParticipants('r1');
  client.loadMoreParticipants('r2');
  assert.deepEqual(sentOf(last(), 'get_participants').map((f) => f.data.roomId), ['r1']);
  assert.equal(client.participants('r2').loading, true);
  // r1's page fails (not stale): the error belongs to r1, and r2's page goes.
  last().receive('error', { code: 'internal_error', message: 'x', requestType: 'get_participants' });
  assert.deepEqual(sentOf(last(), 'get_participants').map((f) => [f.data.roomId, f.data.cursor]), [['r1', 'X1'], ['r2', 'Y1']]);
  assert.equal(client.participants('r1').loading, false);
  assert.deepEqual(ids(client.participants('r1')), ['a'], 'nothing changed in r1');
  last().receive('participants_list', { roomId: 'r2', participants: people('n'), count: 2 });
  assert.deepEqual(ids(client.participants('r2')), ['m', 'n']);
  assert.equal(client.participants('r2').loading, false);
});

test('a page that is never answered stops holding the room after ackTimeoutMs', async () => {
  const { client, last, clock } = await inRoom('big', { participants: people('a'), count: 3, nextCursor: 'C1' }, { client: { ackTimeoutMs: 5000 } });
  client.loadMoreParticipants('big');
  clock.advance(4999);
  assert.equal(client.participants('big').loading, true);
  clock.advance(1);
  assert.equal(client.participants('big').loading, false);
  client.loadMoreParticipants('big');
  assert.equal(sentOf(last(), 'get_participants').length, 2);
});

test('send("get_participants") of a joined room is tracked like loadMoreParticipants: without a cursor its page replaces', async () => {
  const { client, last } = await inRoom('big', { participants: people('a', 'b'), count: 3, nextCursor: 'C1' });
  client.send('get_participants', { roomId: 'big', limit: 1 });
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'big', limit: 1 });
  last().receive('participants_list', { roomId: 'big', participants: people('b'), count: 3, nextCursor: 'C0' });
  assert.deepEqual(ids(client.participants('big')), ['b']);
});

// ---- a stale cursor -------------------------------------------------------------

test('a validation_error on the cursor restarts paging from the first page once, and does not loop', async () => {
  const { client, last } = await inRoom('big', { participants: people('a', 'b'), count: 4, nextCursor: 'C1' });
  client.loadMoreParticipants('big');
  const stale = { code: 'validation_error', message: 'stale', requestType: 'get_participants', details: [{ field: 'cursor', message: 'is stale' }] };
  last().receive('error', stale);
  const pages = sentOf(last(), 'get_participants');
  assert.deepEqual(pages.map((f) => f.data), [{ roomId: 'big', cursor: 'C1' }, { roomId: 'big' }]);
  assert.equal(client.participants('big').loading, true);
  // The first page replaces what was held (b has left since).
  last().receive('participants_list', { roomId: 'big', participants: people('a', 'c'), count: 3, nextCursor: 'C9' });
  let snap = client.participants('big');
  assert.deepEqual([ids(snap), snap.count, snap.hasMore, snap.loading], [['a', 'c'], 3, true, false]);

  // The restart itself failing is not retried.
  client.loadMoreParticipants('big');
  last().receive('error', stale);
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'big' });
  last().receive('error', { ...stale, details: [{ field: 'cursor', message: 'weird' }] });
  assert.equal(sentOf(last(), 'get_participants').length, 4, 'no third request after the first page failed');
  snap = client.participants('big');
  assert.equal(snap.loading, false);
  assert.equal(snap.hasMore, true, 'the list is still short of count: the app may ask again');
});

test('an error about another request type leaves the page in flight alone', async () => {
  const { client, last } = await inRoom('big', { participants: people('a'), count: 2, nextCursor: 'C1' });
  client.loadMoreParticipants('big');
  last().receive('error', { code: 'validation_error', message: 'x', requestType: 'get_history', details: [{ field: 'before', message: 'bad' }] });
  assert.equal(client.participants('big').loading, true);
  assert.equal(sentOf(last(), 'get_participants').length, 1);
});

// ---- small rooms: user_joined / user_left ---------------------------------------

test('user_joined and user_left change the list and the count by one, once per user', async () => {
  const { client, last, changes } = await inRoom('small', { participants: people('ann'), count: 1 });
  const before = changes.length;
  last().receive('user_joined', { roomId: 'small', userId: 'bob', name: 'Bob', timestamp: 't' });
  last().receive('user_joined', { roomId: 'small', userId: 'bob', name: 'Bob', timestamp: 't' }); // e.g. also in a page
  let snap = client.participants('small');
  assert.deepEqual([snap.participants, snap.count], [[{ userId: 'ann', name: 'ANN' }, { userId: 'bob', name: 'Bob' }], 2]);
  last().receive('user_left', { roomId: 'small', userId: 'ann', timestamp: 't' });
  last().receive('user_left', { roomId: 'small', userId: 'ann', timestamp: 't' }); // already gone: nothing
  last().receive('user_left', { roomId: 'small', userId: 'zed', timestamp: 't' }); // never listed in a complete list
  snap = client.participants('small');
  assert.deepEqual([ids(snap), snap.count, snap.hasMore], [['bob'], 1, false]);
  assert.equal(changes.length - before, 3, 'one event per actual change');
  // Another room's frames do not touch this one.
  last().receive('user_joined', { roomId: 'elsewhere', userId: 'cat', name: 'Cat', timestamp: 't' });
  assert.equal(client.participants('small'), snap);
});

test('a user_left for someone not loaded yet still lowers the count of a paged room', async () => {
  const { client, last } = await inRoom('big', { participants: people('a'), count: 150, nextCursor: 'C1' });
  last().receive('user_left', { roomId: 'big', userId: 'zz', timestamp: 't' });
  assert.equal(client.participants('big').count, 149);
});

// ---- large rooms: presence_update -------------------------------------------------

test('presence_update applies joined and left and takes count from the frame', async () => {
  const { client, last } = await inRoom('hall', { participants: people('a', 'b', 'c'), count: 3 });
  last().receive('presence_update', { roomId: 'hall', joined: people('d', 'e'), left: people('b'), joinedCount: 2, leftCount: 1, count: 4 });
  let snap = client.participants('hall');
  assert.deepEqual([ids(snap), snap.count, snap.hasMore], [['a', 'c', 'd', 'e'], 4, false]);
  // A joiner already known (it was in a page) is not listed twice.
  last().receive('presence_update', { roomId: 'hall', joined: people('a'), left: [], joinedCount: 1, leftCount: 0, count: 4 });
  snap = client.participants('hall');
  assert.deepEqual([ids(snap), snap.count], [['a', 'c', 'd', 'e'], 4]);
});

test('joiners a presence_update counts but does not name make hasMore true; loadMore then re-reads from the first page', async () => {
  const { client, last } = await inRoom('hall', { participants: people('a', 'b'), count: 2 });
  last().receive('presence_update', { roomId: 'hall', joined: people('c'), left: [], joinedCount: 3, leftCount: 0, count: 5 });
  const snap = client.participants('hall');
  assert.deepEqual([snap.count, snap.hasMore], [5, true]);
  client.loadMoreParticipants('hall');
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'hall' });
  last().receive('participants_list', { roomId: 'hall', participants: people('a', 'b', 'c', 'd', 'e'), count: 5 });
  assert.deepEqual([ids(client.participants('hall')), client.participants('hall').hasMore], [['a', 'b', 'c', 'd', 'e'], false]);
});

test('a presence_update that names fewer users than it counts marks the list for a re-read from the first page', async () => {
  const { client, last } = await inRoom('hall', { participants: people('a', 'b', 'c', 'd'), count: 400, nextCursor: 'C1' });
  // 60 left, 50 named (b among them): the ten unnamed may be listed here still.
  last().receive('presence_update', { roomId: 'hall', joined: [], left: people('b'), joinedCount: 0, leftCount: 60, count: 340 });
  let snap = client.participants('hall');
  assert.deepEqual([ids(snap), snap.count, snap.hasMore], [['a', 'c', 'd'], 340, true]);
  client.loadMoreParticipants('hall');
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'hall' }, 'from the first page, not after C1');
  last().receive('participants_list', { roomId: 'hall', participants: people('a', 'd'), count: 340, nextCursor: 'C5' });
  snap = client.participants('hall');
  assert.deepEqual([ids(snap), snap.hasMore], [['a', 'd'], true]);
  client.loadMoreParticipants('hall');
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'hall', cursor: 'C5' }, 'then pages on as usual');
});

test('a join that is never answered stops blocking loadMoreParticipants after ackTimeoutMs (and joinTimeoutMs)', async () => {
  const timeouts = { ackTimeoutMs: 5000, joinTimeoutMs: 5000 };
  const { client, last, clock } = await inRoom('big', { participants: people('a'), count: 3, nextCursor: 'C1' }, { client: timeouts });
  client.joinRoom('big'); // again, on the open connection: its answer is lost
  assert.throws(() => client.loadMoreParticipants('big'), refusal('participants_loading'));
  clock.advance(5000);
  client.loadMoreParticipants('big');
  assert.deepEqual(sentOf(last(), 'get_participants').at(-1).data, { roomId: 'big', cursor: 'C1' });
  last().receive('participants_list', { roomId: 'big', participants: people('b', 'c'), count: 3 });
  assert.deepEqual(ids(client.participants('big')), ['a', 'b', 'c'], 'the page appends: the lost join is not waited for');
});

// ---- reconnect, rejoin, leave ---------------------------------------------------------

test("after a reconnect the rejoin's first page replaces the list: no ghost, no duplicate, and extra pages are dropped", async () => {
  const { client, last, clock, WS } = await inRoom('big', { participants: people('a', 'b'), count: 5, nextCursor: 'C1' });
  client.loadMoreParticipants('big');
  last().receive('participants_list', { roomId: 'big', participants: people('c', 'd'), count: 5, nextCursor: 'C2' });
  client.loadMoreParticipants('big'); // in flight when the socket drops
  last().drop(1006);
  assert.equal(client.participants('big').loading, false, 'the page in flight died with the socket');
  assert.deepEqual(ids(client.participants('big')), ['a', 'b', 'c', 'd'], 'kept until the rejoin answers');
  clock.advance(1000); // the first retry (random 0.5 of a 500 ms ceiling)
  await tick();
  assert.equal(WS.instances.length, 2);
  last().open();
  await tick();
  assert.deepEqual(sentOf(last(), 'join_room').map((f) => f.data.roomId), ['big']);
  // b left and x joined while we were away.
  last().receive('participants_list', { roomId: 'big', participants: people('a', 'x'), count: 5, nextCursor: 'N1' });
  last().receive('chat_history', { roomId: 'big', messages: [], hasMore: false });
  let snap = client.participants('big');
  assert.deepEqual([ids(snap), snap.count, snap.hasMore], [['a', 'x'], 5, true]);
  client.loadMoreParticipants('big');
  assert.deepEqual(sentOf(last(), 'get_participants').map((f) => f.data.cursor), ['N1'], 'the new cursor, not the old socket\'s');
  last().receive('participants_list', { roomId: 'big', participants: people('c', 'd', 'e'), count: 5 });
  snap = client.participants('big');
  assert.deepEqual([ids(snap), snap.hasMore], [['a', 'c', 'd', 'e', 'x'], false]);
});

test('joinRoom again on an open connection: its first page replaces, an earlier page in flight still appends in order', async () => {
  const { client, last } = await inRoom('big', { participants: people('a'), count: 3, nextCursor: 'C1' });
  client.loadMoreParticipants('big');
  client.joinRoom('big');
  last().receive('participants_list', { roomId: 'big', participants: people('b'), count: 3, nextCursor: 'C2' });
  last().receive('participants_list', { roomId: 'big', participants: people('a'), count: 3, nextCursor: 'C1' });
  const snap = client.participants('big');
  assert.deepEqual([ids(snap), snap.loading], [['a'], false]);
});

test('leaveRoom forgets the room: empty, `participants` fires, and later frames for it are ignored', async () => {
  const { client, last, changes } = await inRoom('hall', { participants: people('a', 'b'), count: 2 });
  client.leaveRoom('hall');
  assert.deepEqual(changes.at(-1), { roomId: 'hall', participants: [], count: 0, hasMore: false, loading: false });
  last().receive('user_joined', { roomId: 'hall', userId: 'c', name: 'C', timestamp: 't' });
  last().receive('presence_update', { roomId: 'hall', joined: people('d'), left: [], joinedCount: 1, leftCount: 0, count: 9 });
  assert.deepEqual(client.participants('hall').participants, []);
  assert.equal(client.participants('hall').count, 0);
});

test('malformed participants frames change nothing they cannot read', async () => {
  const { client, last } = await inRoom('hall', { participants: [...people('a'), { name: 'no id' }, null, 'x'], count: 1 });
  assert.deepEqual(ids(client.participants('hall')), ['a']);
  last().receive('presence_update', { roomId: 'hall', joined: 'nope', left: null });
  last().receive('user_joined', { roomId: 'hall', name: 'no id' });
  const snap = client.participants('hall');
  assert.deepEqual([ids(snap), snap.count], [['a'], 1]);
});
