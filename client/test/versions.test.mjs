// Per-message versions (PROTOCOL.md "Versions"): a copy or change older than what is held never
// overwrites it, whatever order the frames arrive in (useRoom's own: react.test.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RoomMessages, versionOf } from '../parley-client.js';

const M = (version, extra = {}) => ({
  messageId: '01A', roomId: 'lobby', userId: 'bob', name: 'Bob', message: 'helo', timestamp: 't', version, ...extra,
});
const edited = (version, message = 'hello') => ({ roomId: 'lobby', messageId: '01A', message, editedAt: `e${version}`, version });
const deleted = (version) => ({ roomId: 'lobby', messageId: '01A', deletedBy: 'bob', version });
const reacted = (version, counts) => ({ roomId: 'lobby', messageId: '01A', userId: 'x', emoji: '👍', action: 'added', counts, version });

test('a change heard before the join\'s chat_history survives the older copy in it', () => {
  for (const [type, change, expect] of [
    ['message_updated', edited(2), (m) => assert.deepEqual([m.message, m.editedAt, m.version], ['hello', 'e2', 2])],
    ['message_deleted', deleted(2), (m) => assert.deepEqual([m.deleted, m.message, m.version], [true, undefined, 2])],
    ['reaction_update', reacted(2, { '👍': 1 }), (m) => assert.deepEqual([m.reactions, m.version], [{ '👍': 1 }, 2])],
  ]) {
    const held = new RoomMessages();
    assert.equal(held.change(type, change), false, 'not held yet: kept for when it comes');
    assert.equal(held.put(M(1)), true);
    expect(held.get('01A'));
    const page = new RoomMessages(); // the page was read after the change: nothing older to undo
    page.change(type, change);
    page.put({ ...M(2), message: 'hello', editedAt: 'e2' });
    assert.equal(page.get('01A').version, 2);
  }
});

test('a rejoin\'s since page with the copy from before a live change leaves the change', () => {
  const held = new RoomMessages();
  held.put(M(1));
  assert.equal(held.change('message_updated', edited(2)), true);
  assert.equal(held.change('reaction_update', reacted(3, { '🎉': 2 })), true);
  assert.equal(held.put(M(1)), false, 'held already');
  const m = held.get('01A');
  assert.deepEqual([m.message, m.editedAt, m.reactions, m.version], ['hello', 'e2', { '🎉': 2 }, 3]);
  held.change('message_deleted', deleted(4));
  held.put(M(3, { message: 'hello', editedAt: 'e2', reactions: { '🎉': 2 } }));
  assert.equal(held.get('01A').deleted, true, 'a deletion is not undone by an older copy');
  assert.deepEqual(held.list().map((x) => x.version), [4]);
});

test('out-of-order reaction_updates keep the higher version\'s counts; an equal one is harmless', () => {
  const held = new RoomMessages();
  held.put(M(1));
  assert.equal(held.change('reaction_update', reacted(3, { '👍': 2 })), true);
  assert.equal(held.change('reaction_update', reacted(2, { '👍': 1 })), false);
  assert.deepEqual(held.get('01A').reactions, { '👍': 2 });
  assert.equal(held.change('reaction_update', reacted(3, { '👍': 2 })), true, 'a retry tells the same version again');
  assert.deepEqual([held.get('01A').reactions, held.get('01A').version], [{ '👍': 2 }, 3]);
});

test('an edit that arrives after a later reaction still shows: text and reactions are compared each on their own', () => {
  const held = new RoomMessages();
  held.put(M(1));
  held.change('reaction_update', reacted(3, { '👍': 1 })); // counts after the edit at 2 and this reaction
  assert.equal(held.change('message_updated', edited(2)), true);
  const m = held.get('01A');
  assert.deepEqual([m.message, m.reactions, m.version], ['hello', { '👍': 1 }, 3]);
  assert.equal(held.change('message_updated', edited(1, 'stale')), false);
  // pending changes for a message not held yet apply in version order, only where newer than the copy
  const pending = new RoomMessages();
  pending.change('reaction_update', reacted(4, { '👍': 2 }));
  pending.change('message_updated', edited(3, 'third'));
  pending.change('message_updated', edited(2, 'second'));
  pending.put(M(2, { message: 'second', editedAt: 'e2' }));
  const p = pending.get('01A');
  assert.deepEqual([p.message, p.editedAt, p.reactions, p.version], ['third', 'e3', { '👍': 2 }, 4]);
});

test('a server without versions: every copy counts as 0 and the last one wins, as before', () => {
  const held = new RoomMessages();
  const { version, ...old } = M(0);
  assert.equal(versionOf(old), 0);
  assert.equal(versionOf({ version: 'x' }), 0);
  held.put(old);
  held.change('message_updated', { roomId: 'lobby', messageId: '01A', message: 'hello', editedAt: 'e' });
  assert.deepEqual(held.get('01A'), { ...old, message: 'hello', editedAt: 'e' }, 'no version field is made up');
  held.put({ ...old, message: 'from a later page' });
  assert.equal(held.get('01A').message, 'from a later page');
  const unheld = new RoomMessages();
  unheld.change('message_updated', { roomId: 'lobby', messageId: '01A', message: 'lost', editedAt: 'e' });
  unheld.put(old);
  assert.equal(unheld.get('01A').message, 'helo', 'an unversioned change to a message not held is dropped, as before');
});

test('changes to messages never held are bounded', () => {
  const held = new RoomMessages({ pendingLimit: 3 });
  for (let n = 0; n < 5; n += 1) held.change('message_updated', { ...edited(2, `m${n}`), messageId: `01${n}` });
  held.put({ ...M(1), messageId: '010' });
  held.put({ ...M(1), messageId: '014' });
  assert.deepEqual(held.list().map((m) => m.message), ['helo', 'm4'], 'the oldest kept changes went first');
});

test('a rejoin\'s changed copy updates a held message by its version and never adds one not held', () => {
  const held = new RoomMessages();
  held.put(M(1));
  held.put(M(1, { messageId: '01B', message: 'newer' }));
  assert.equal(held.refresh(M(3, { deleted: true, deletedBy: 'mod', message: undefined })), true);
  assert.deepEqual([held.get('01A').deleted, held.get('01A').message, held.get('01A').version], [true, undefined, 3]);
  assert.equal(held.refresh(M(2, { messageId: '01B', message: 'edited', editedAt: 'e2', reactions: { '👍': 1 } })), true);
  assert.deepEqual([held.get('01B').message, held.get('01B').reactions, held.get('01B').version], ['edited', { '👍': 1 }, 2]);
  assert.equal(held.refresh(M(1, { messageId: '01B', message: 'newer' })), true, 'an older copy changes nothing');
  assert.equal(held.get('01B').message, 'edited');
  assert.equal(held.refresh(M(2, { messageId: '00Z', message: 'never shown' })), false);
  assert.equal(held.has('00Z'), false);
  assert.equal(held.size, 2);
});
