// Per-sender order: one chat_message per room in flight; the next goes after the server's answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connected, msg } from '../test-support/harness.mjs';

const chats = (ws) => ws.frames().filter((f) => f.type === 'chat_message').map((f) => f.data.message);

/** The server's answer to a first send: the fan-out's message_received (to the sender too), then chat_update. */
function answer(ws, roomId, clientMessageId, messageId) {
  ws.receive('message_received', msg(roomId, messageId, { userId: 'alice', clientMessageId }));
  ws.receive('chat_update', { roomId, messageId, status: 'delivered', deliveredTo: 1 });
}

test('a burst goes one at a time: the next after the previous chat_update', async () => {
  const { client, last } = await connected();
  const ids = ['a', 'b', 'c'].map((t) => client.sendChatMessage('r', t));
  assert.deepEqual(chats(last()), ['a']);
  assert.equal(client.queuedCount, 2);
  last().receive('message_received', msg('r', '01A', { userId: 'alice', clientMessageId: ids[0] }));
  assert.deepEqual(chats(last()), ['a'], 'stored, but its fan-out is not finished');
  last().receive('chat_update', { roomId: 'r', messageId: '01OTHER', status: 'delivered', deliveredTo: 1 });
  assert.deepEqual(chats(last()), ['a'], 'a chat_update for another message does not release the room');
  last().receive('chat_update', { roomId: 'r', messageId: '01A', status: 'delivered', deliveredTo: 1 });
  assert.deepEqual(chats(last()), ['a', 'b']);
  answer(last(), 'r', ids[1], '01B');
  answer(last(), 'r', ids[2], '01C');
  assert.deepEqual(chats(last()), ['a', 'b', 'c']);
  assert.deepEqual(client.pendingClientMessageIds, []);
  assert.equal(client.queuedCount, 0);
});

test('rooms are independent: one message in flight per room', async () => {
  const { client, last } = await connected();
  client.sendChatMessage('r1', 'r1-a');
  client.sendChatMessage('r2', 'r2-a');
  client.sendChatMessage('r1', 'r1-b');
  client.sendEcho('echo goes at once');
  assert.deepEqual(chats(last()), ['r1-a', 'r2-a']);
  assert.equal(last().frames().at(-1).type, 'message');
});

test('a refused message releases the room; a rate-limited one keeps its place', async () => {
  const { client, last, clock } = await connected();
  const [a, b] = [client.sendChatMessage('r', 'a'), client.sendChatMessage('r', 'b')];
  const c = client.sendChatMessage('r', 'c');
  last().receive('error', { code: 'validation_error', message: 'bad', requestType: 'chat_message', clientMessageId: a });
  assert.deepEqual(chats(last()), ['a', 'b']);
  last().receive('error', { code: 'rate_limited', message: 'slow down', clientMessageId: b, retryAfterMs: 300 });
  clock.advance(299);
  assert.deepEqual(chats(last()), ['a', 'b'], 'c waits behind b');
  clock.advance(1);
  assert.deepEqual(chats(last()), ['a', 'b', 'b']);
  // the re-sent b may be answered with message_received only (the server's duplicate path)
  last().receive('message_received', msg('r', '01B', { userId: 'alice', clientMessageId: b }));
  assert.deepEqual(chats(last()), ['a', 'b', 'b', 'c']);
  answer(last(), 'r', c, '01C');
  assert.deepEqual(client.pendingClientMessageIds, []);
});

test('after a reconnect, unacknowledged messages go again in their order, one at a time', async () => {
  const { client, last, clock } = await connected();
  client.joinRoom('r');
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  const ids = ['a', 'b', 'c'].map((t) => client.sendChatMessage('r', t));
  last().drop(); // a was in flight, b and c queued
  client.sendChatMessage('r', 'd'); // sent while down
  clock.advance(1000);
  last().open();
  assert.deepEqual(chats(last()), [], 'held until the rejoin is answered');
  last().receive('chat_history', { roomId: 'r', messages: [], hasMore: false });
  assert.deepEqual(chats(last()), ['a']);
  // a had been written before: its message_received is enough (the server may skip chat_update for a duplicate)
  last().receive('message_received', msg('r', '01A', { userId: 'alice', clientMessageId: ids[0] }));
  assert.deepEqual(chats(last()), ['a', 'b']);
  answer(last(), 'r', ids[1], '01B');
  answer(last(), 'r', ids[2], '01C');
  assert.deepEqual(chats(last()), ['a', 'b', 'c', 'd']);
});

test('a message answered by nothing stops holding its room after ackTimeoutMs', async () => {
  const { client, last, clock } = await connected({ client: { ackTimeoutMs: 5000 } });
  client.sendChatMessage('r', 'a');
  client.sendChatMessage('r', 'b');
  clock.advance(4999);
  assert.deepEqual(chats(last()), ['a']);
  clock.advance(1);
  assert.deepEqual(chats(last()), ['a', 'b']);
  assert.equal(client.pendingClientMessageIds.length, 2, 'a stays pending: re-sent on the next reconnect');
});

test('internal_error: re-sent (same clientMessageId) twice, then the room moves on', async () => {
  const { client, last, clock } = await connected();
  const a = client.sendChatMessage('r', 'a');
  client.sendChatMessage('r', 'b');
  const fail = () => last().receive('error', { code: 'internal_error', message: 'x', clientMessageId: a });
  fail();
  clock.advance(1000);
  assert.deepEqual(chats(last()), ['a', 'a']);
  fail();
  clock.advance(2000);
  assert.deepEqual(chats(last()), ['a', 'a', 'a']);
  fail();
  assert.deepEqual(chats(last()), ['a', 'a', 'a', 'b']);
  assert.ok(client.pendingClientMessageIds.includes(a), 'still pending for the next reconnect');
});

test('leaving a room drops its message in flight and its queue', async () => {
  const { client, last } = await connected();
  client.sendChatMessage('r', 'a');
  client.sendChatMessage('r', 'b');
  client.leaveRoom('r');
  client.sendChatMessage('r', 'c');
  assert.deepEqual(chats(last()), ['a', 'c']);
});

test("a large room's chat_update {status: 'sent'} releases the next message; a read receipt does not", async () => {
  const { client, last } = await connected();
  const ids = ['a', 'b'].map((t) => client.sendChatMessage('big', t));
  last().receive('message_received', msg('big', '01A', { userId: 'alice', clientMessageId: ids[0] }));
  last().receive('chat_update', { roomId: 'big', messageId: '01A', status: 'read', userId: 'bob' });
  assert.deepEqual(chats(last()), ['a'], 'a read receipt is not the answer to the send');
  last().receive('chat_update', { roomId: 'big', messageId: '01A', status: 'sent', recipients: 500 });
  assert.deepEqual(chats(last()), ['a', 'b']);
});
