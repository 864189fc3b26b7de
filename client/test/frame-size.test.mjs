// A frame over 32 KB (UTF-8 bytes) is refused locally, not sent to be closed with 1009.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MAX_CLIENT_FRAME_BYTES, ParleyError } from '../parley-client.js';
import { connected } from '../test-support/harness.mjs';

const bytesOf = (s) => Buffer.byteLength(s, 'utf8');

test('the limit is 32 KB', () => {
  assert.equal(MAX_CLIENT_FRAME_BYTES, 32768);
});

test('a chat message over the limit throws frame_too_large; nothing is sent or kept; the connection stays', async () => {
  const { client, last, events } = await connected();
  assert.throws(
    () => client.sendChatMessage('r', 'x'.repeat(40_000)),
    (e) => e instanceof ParleyError && e.code === 'frame_too_large' && e.bytes > 40_000 && e.limit === 32768 && /shorter/.test(e.message),
  );
  assert.equal(last().sent.length, 0);
  assert.deepEqual(client.pendingClientMessageIds, []);
  assert.equal(client.isConnected, true);
  client.sendChatMessage('r', 'fine');
  assert.equal(last().frames()[0].data.message, 'fine');
  assert.deepEqual(events.filter((e) => e[0] === 'disconnect'), []);
});

test('the size is counted in UTF-8 bytes, not characters', async () => {
  const { client, last } = await connected();
  const euro = '€'; // 3 bytes
  assert.throws(() => client.sendChatMessage('r', euro.repeat(11_000)), (e) => e.code === 'frame_too_large' && e.bytes > 33_000);
  client.sendChatMessage('r', euro.repeat(10_000)); // 30,000 bytes of text: fits
  assert.equal(last().sent.length, 1);
});

test('a frame of exactly 32768 bytes goes; one byte more does not', async () => {
  const { client, last } = await connected({ client: { generateId: () => 'id' } });
  const envelope = bytesOf(JSON.stringify({ type: 'chat_message', data: { roomId: 'r', message: '', clientMessageId: 'id' } }));
  client.sendChatMessage('r', 'y'.repeat(MAX_CLIENT_FRAME_BYTES - envelope));
  assert.equal(bytesOf(last().sent[0]), MAX_CLIENT_FRAME_BYTES);
  assert.throws(() => client.sendChatMessage('r', 'y'.repeat(MAX_CLIENT_FRAME_BYTES - envelope + 1)), (e) => e.code === 'frame_too_large');
});

test('queued frames are checked before they are queued, and sendRaw is checked too', async () => {
  const { client, last } = await connected();
  last().drop();
  assert.throws(() => client.sendEcho('z'.repeat(33_000)), (e) => e.code === 'frame_too_large');
  assert.equal(client.queuedCount, 0);
  assert.throws(() => client.sendRaw('z'.repeat(33_000)), (e) => e.code === 'frame_too_large');
});
