// Tests of the React provider (needs `npm ci` in client/ for react + react-test-renderer).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ParleyClient } from '../parley-client.js';
import { FakeClock, makeFakeWebSocket } from '../test-support/fakes.mjs';

let React, TR, P;
try {
  React = await import('react');
  TR = (await import('react-test-renderer')).default;
  P = await import('../react/parley-react.js');
} catch (err) {
  if (process.env.CI) throw err; // in CI the dev dependencies must be installed
}
const skip = !P && 'react is not installed: run `npm ci` in client/';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

function makeClient() {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  let n = 0;
  const client = new ParleyClient({
    url: 'ws://test/local',
    token: 't',
    WebSocketImpl: WS,
    timers: clock,
    now: () => clock.now,
    random: () => 0.5,
    generateId: () => `c${++n}`,
  });
  return { client, clock, WS, last: () => WS.instances.at(-1) };
}

const h = (...a) => React.createElement(...a);

async function render(el) {
  let root;
  const origError = console.error;
  console.error = (...args) => {
    if (String(args[0]).includes('react-test-renderer is deprecated')) return;
    origError(...args);
  };
  try {
    await TR.act(async () => {
      root = TR.create(el);
    });
  } finally {
    console.error = origError;
  }
  return root;
}

const act = (fn) => TR.act(async () => fn());

test('useWebSocket: isConnected, sendMessage in the seed format, on/off', { skip }, async () => {
  const { client, last } = makeClient();
  let api;
  function Probe() {
    api = P.useWebSocket();
    return null;
  }
  const root = await render(h(P.WebSocketProvider, { client }, h(Probe)));
  assert.equal(api.isConnected, false);
  assert.equal(api.state, 'connecting');
  await act(() => last().open());
  assert.equal(api.isConnected, true);

  const got = [];
  const unsubscribe = api.on('message_response', (d) => got.push(d.message));
  api.sendMessage({ type: 'message', data: { message: 'hi' } });
  assert.deepEqual(last().frames(), [{ type: 'message', data: { message: 'hi' } }]);
  await act(() => last().receive('message_response', { status: 'received', message: 'hi', timestamp: 't' }));
  unsubscribe();
  await act(() => last().receive('message_response', { status: 'received', message: 'again', timestamp: 't' }));
  assert.deepEqual(got, ['hi']);

  const id = api.sendMessage({ type: 'chat_message', data: { roomId: 'r', message: 'x' } });
  assert.equal(id, 'c1');

  await act(() => api.disconnect());
  assert.equal(api.isConnected, false);
  assert.equal(api.state, 'closed');
  await act(() => root.unmount());
});

test('reconnect attempts and connect errors are exposed', { skip }, async () => {
  const { client, last, clock } = makeClient();
  let api;
  function Probe() {
    api = P.useWebSocket();
    return null;
  }
  await render(h(P.WebSocketProvider, { client }, h(Probe)));
  await act(() => last().open());
  await act(() => last().drop(1006));
  assert.equal(api.state, 'reconnecting');
  assert.equal(api.reconnectAttempts, 1);
  await act(() => clock.advance(1000));
  await act(() => last().refuse());
  assert.equal(api.reconnectAttempts, 2);
  await act(() => clock.advance(5000));
  await act(() => last().open());
  assert.equal(api.isConnected, true);
  assert.equal(api.reconnectAttempts, 0);

  // a provider that creates its own client and is refused
  const WS = makeFakeWebSocket();
  let api2;
  function Probe2() {
    api2 = P.useWebSocket();
    return null;
  }
  await render(h(P.WebSocketProvider, { url: 'ws://x/local', token: 'bad', options: { WebSocketImpl: WS } }, h(Probe2)));
  await act(() => WS.instances[0].refuse());
  assert.equal(api2.state, 'closed');
  assert.equal(api2.error.code, 'refused');
});

test('the provider shows the state the client is in: a failing tokenProvider is "reconnecting", never a stale "closed"', { skip }, async () => {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  const answers = ['t1', 'down', 'down', 't2'];
  const tokenProvider = () => {
    const a = answers.shift();
    return a === 'down' ? Promise.reject(new TypeError('Failed to fetch')) : Promise.resolve(a);
  };
  const client = new ParleyClient({ url: 'ws://test/local', tokenProvider, WebSocketImpl: WS, timers: clock, now: () => clock.now, random: () => 0.5 });
  let api;
  const seen = [];
  function Probe() {
    api = P.useWebSocket();
    seen.push(`${api.state}/${api.reconnectAttempts}/${api.error ? api.error.code : '-'}`);
    return null;
  }
  await render(h(P.WebSocketProvider, { client }, h(Probe)));
  await act(() => WS.instances[0].open());
  await act(() => WS.instances[0].drop(1001));
  for (let i = 0; i < 2; i++) await act(() => clock.advance(1000)); // two attempts whose token fetch fails
  assert.equal(api.state, 'reconnecting');
  assert.equal(api.reconnectAttempts, client.reconnectAttempts);
  assert.equal(api.reconnectAttempts, 3);
  assert.equal(api.error, null);
  await act(() => clock.advance(2000));
  await act(() => WS.instances[1].open());
  assert.equal(api.state, 'open');
  assert.ok(!seen.some((x) => x.startsWith('closed')), seen.join(' '));
  // then a terminal failure is shown as such, with its error, and a new connect() clears it
  await act(() => client.close());
  answers.push('');
  await act(async () => {
    await client.connect().catch(() => {});
  });
  assert.equal(api.state, 'closed');
  assert.equal(api.error.code, 'unauthorized');
  answers.push('t3');
  await act(() => {
    client.connect().catch(() => {});
  });
  assert.equal(api.error, null);
  assert.equal(api.state, 'connecting');
});

test('useRoom: joins, merges history and live messages without duplicates, participants, typing, leaves', { skip }, async () => {
  const { client, last, clock } = makeClient();
  let room;
  function Room({ id }) {
    room = P.useRoom(id);
    return h('ul', null, room.messages.map((m) => h('li', { key: m.messageId }, m.message)));
  }
  const root = await render(h(P.WebSocketProvider, { client }, h(Room, { id: 'lobby' })));
  await act(() => last().open());
  assert.deepEqual(last().frames(), [{ type: 'join_room', data: { roomId: 'lobby' } }]);

  const M = (id, text, userId = 'bob') => ({ messageId: id, roomId: 'lobby', userId, name: userId, message: text, timestamp: 't' });
  await act(() => {
    last().receive('participants_list', { roomId: 'lobby', participants: [{ userId: 'alice', name: 'Alice' }] });
    last().receive('chat_history', { roomId: 'lobby', messages: [M('01A', 'a'), M('01B', 'b')], hasMore: true });
  });
  assert.equal(room.joined, true);
  assert.equal(room.hasMore, true);
  assert.deepEqual(room.messages.map((m) => m.message), ['a', 'b']);

  await act(() => {
    last().receive('user_joined', { roomId: 'lobby', userId: 'bob', name: 'Bob', timestamp: 't' });
    last().receive('typing_update', { roomId: 'lobby', userId: 'bob', isTyping: true });
    last().receive('message_received', M('01B', 'b')); // duplicate
    last().receive('message_received', M('01C', 'c'));
    last().receive('message_received', { ...M('01Z', 'elsewhere'), roomId: 'other' });
  });
  assert.deepEqual(room.participants.map((p) => p.userId), ['alice', 'bob']);
  assert.deepEqual(room.messages.map((m) => m.message), ['a', 'b', 'c']);
  assert.deepEqual(room.typingUsers, []); // bob's message ended his typing

  await act(() => last().receive('typing_update', { roomId: 'lobby', userId: 'bob', isTyping: true }));
  assert.deepEqual(room.typingUsers, ['bob']);
  await act(() => clock.advance(6000));
  assert.deepEqual(room.typingUsers, [], 'typing expires');

  // rendered
  assert.deepEqual(root.toJSON().children.map((li) => li.children[0]), ['a', 'b', 'c']);

  // send returns the clientMessageId; setTyping / markRead / loadOlder
  const id = room.send('hello');
  room.setTyping(true);
  room.markRead('01C');
  room.loadOlder();
  assert.deepEqual(last().frames().slice(1), [
    { type: 'chat_message', data: { roomId: 'lobby', message: 'hello', clientMessageId: id } },
    { type: 'typing', data: { roomId: 'lobby', isTyping: true } },
    { type: 'mark_read', data: { roomId: 'lobby', messageId: '01C' } },
    { type: 'get_history', data: { roomId: 'lobby', before: '01A' } },
  ]);

  // reconnect: rejoin with since, messages kept, nothing doubled
  await act(() => last().drop());
  await act(() => clock.advance(1000));
  await act(() => last().open());
  assert.deepEqual(last().frames()[0], { type: 'join_room', data: { roomId: 'lobby', since: '01C' } });
  await act(() => {
    last().receive('participants_list', { roomId: 'lobby', participants: [{ userId: 'alice', name: 'Alice' }] });
    // the rejoin's page starts before what is held (the client's overlap) and says nothing of older messages
    last().receive('chat_history', { roomId: 'lobby', messages: [M('01A', 'a'), M('01D', 'while away')], hasMore: false, unreadCount: 1, unreadCapped: false });
  });
  assert.deepEqual(room.messages.map((m) => m.message), ['a', 'b', 'c', 'while away']);
  assert.equal(room.hasMore, true, 'older messages are still there to load');
  // a catch-up page (get_history with since, no unreadCount) from as far back says nothing of older ones either
  await act(() => last().receive('chat_history', { roomId: 'lobby', messages: [M('01A', 'a'), M('01E', 'later')], hasMore: false, since: '01A' }));
  assert.equal(room.hasMore, true, 'a catch-up page leaves the oldest end alone');
  assert.deepEqual(room.participants.map((p) => p.userId), ['alice']);

  await act(() => last().receive('user_left', { roomId: 'lobby', userId: 'alice', timestamp: 't' }));
  assert.deepEqual(room.participants, []);

  // unmount leaves the room
  await act(() => root.unmount());
  assert.deepEqual(last().frames().at(-1), { type: 'leave_room', data: { roomId: 'lobby' } });
  assert.deepEqual(client.rooms, []);
});

test('two components in one room share it: joined once, left after the last unmounts', { skip }, async () => {
  const { client, last } = makeClient();
  const seen = {};
  function Room({ name }) {
    seen[name] = P.useRoom('shared');
    return null;
  }
  function App({ a, b }) {
    return h(P.WebSocketProvider, { client }, a ? h(Room, { name: 'a' }) : null, b ? h(Room, { name: 'b' }) : null);
  }
  const root = await render(h(App, { a: true, b: true }));
  await act(() => last().open());
  assert.equal(last().frames().filter((f) => f.type === 'join_room').length, 1);
  await act(() => last().receive('chat_history', { roomId: 'shared', messages: [{ messageId: '01A', roomId: 'shared', userId: 'u', name: 'u', message: 'x', timestamp: 't' }], hasMore: false }));
  assert.equal(seen.a.messages.length, 1);
  assert.equal(seen.b.messages.length, 1);
  await act(() => root.update(h(App, { a: false, b: true })));
  assert.equal(last().frames().filter((f) => f.type === 'leave_room').length, 0);
  await act(() => root.update(h(App, { a: false, b: false })));
  assert.equal(last().frames().filter((f) => f.type === 'leave_room').length, 1);
});

test('useWebSocket outside the provider throws a clear error', { skip }, async () => {
  function Bad() {
    P.useWebSocket();
    return null;
  }
  const origError = console.error;
  console.error = () => {};
  try {
    await assert.rejects(() => render(h(Bad)), /inside <WebSocketProvider>/);
  } finally {
    console.error = origError;
  }
});

/** useRoom('lobby') mounted on an open connection; `view.room` is the hook's latest result. */
async function lobbyView() {
  const made = makeClient();
  const view = { ...made, room: null, root: null };
  function Room() {
    view.room = P.useRoom('lobby');
    return null;
  }
  view.root = await render(h(P.WebSocketProvider, { client: made.client }, h(Room)));
  await act(() => made.last().open());
  return view;
}

test('useRoom: unread from join, edits, tombstones and reactions applied, edit/remove/react send frames', { skip }, async () => {
  const view = await lobbyView();
  const { last, root } = view;
  const m1 = { messageId: '01A', roomId: 'lobby', userId: 'bob', name: 'Bob', message: 'helo', timestamp: 't' };
  const m2 = { ...m1, messageId: '01B', message: 'two' };
  await act(() => last().receive('chat_history', { roomId: 'lobby', messages: [m1, m2], hasMore: false, unreadCount: 2, unreadCapped: false }));
  assert.equal(view.room.unreadCount, 2);
  await act(() => last().receive('chat_history', { roomId: 'lobby', messages: [], hasMore: false }));
  assert.equal(view.room.unreadCount, 2, 'a get_history page does not reset the count');
  await act(() => last().receive('message_received', { ...m1, messageId: '01C', message: 'three' }));
  assert.equal(view.room.unreadCount, 3);
  await act(() => view.room.markRead('01B'));
  assert.equal(view.room.unreadCount, 1);

  await act(() => last().receive('message_updated', { roomId: 'lobby', messageId: '01A', message: 'hello', editedAt: 'e' }));
  assert.deepEqual([view.room.messages[0].message, view.room.messages[0].editedAt], ['hello', 'e']);
  await act(() => last().receive('reaction_update', { roomId: 'lobby', messageId: '01A', userId: 'x', emoji: '👍', action: 'added', counts: { '👍': 1 } }));
  assert.deepEqual(view.room.messages[0].reactions, { '👍': 1 });
  await act(() => last().receive('reaction_update', { roomId: 'lobby', messageId: '01A', userId: 'x', emoji: '👍', action: 'removed', counts: {} }));
  assert.equal(view.room.messages[0].reactions, undefined);
  await act(() => last().receive('message_deleted', { roomId: 'lobby', messageId: '01B', deletedBy: 'bob' }));
  assert.deepEqual(view.room.messages[1], { messageId: '01B', roomId: 'lobby', userId: 'bob', name: 'Bob', timestamp: 't', deleted: true, deletedBy: 'bob' });
  await act(() => last().receive('message_updated', { roomId: 'other', messageId: '01A', message: 'not here', editedAt: 'e' }));
  assert.equal(view.room.messages[0].message, 'hello', 'frames of another room change nothing');

  last().sent.length = 0;
  await act(() => {
    view.room.edit('01A', 'hi');
    view.room.remove('01A');
    view.room.react('01A', '🎉', { remove: true });
  });
  assert.deepEqual(last().frames(), [
    { type: 'edit_message', data: { roomId: 'lobby', messageId: '01A', message: 'hi' } },
    { type: 'delete_message', data: { roomId: 'lobby', messageId: '01A' } },
    { type: 'react', data: { roomId: 'lobby', messageId: '01A', emoji: '🎉', remove: true } },
  ]);
  await act(() => root.unmount());
});

test('useRoom: changes heard during a join and a rejoin survive the older copy in the chat_history that follows', { skip }, async () => {
  const view = await lobbyView();
  const { clock, last, root } = view;
  const M = (version, extra = {}) => ({ messageId: '01A', roomId: 'lobby', userId: 'bob', name: 'Bob', message: 'helo', timestamp: 't', version, ...extra });
  const reacted = (version, counts, messageId = '01A') => ({ roomId: 'lobby', messageId, userId: 'x', emoji: '🎉', action: 'added', counts, version });
  // The join: an edit and a reaction land while it is under way and are delivered before its answer.
  await act(() => {
    last().receive('message_updated', { roomId: 'lobby', messageId: '01A', message: 'hello', editedAt: 'e', version: 2 });
    last().receive('reaction_update', reacted(3, { '🎉': 1 }));
    last().receive('chat_history', { roomId: 'lobby', messages: [M(1)], hasMore: false, unreadCount: 1, unreadCapped: false });
  });
  let [m] = view.room.messages;
  assert.deepEqual([m.message, m.reactions, m.version], ['hello', { '🎉': 1 }, 3]);

  // A reconnect: the rejoin (since) answers with a copy read before a deletion heard live.
  await act(() => last().drop());
  await act(() => clock.advance(1000));
  await act(() => last().open());
  assert.equal(last().frames()[0].type, 'join_room');
  await act(() => {
    last().receive('message_deleted', { roomId: 'lobby', messageId: '01A', deletedBy: 'bob', version: 4 });
    last().receive('chat_history', { roomId: 'lobby', messages: [M(3, { message: 'hello', editedAt: 'e', reactions: { '🎉': 1 } })], hasMore: false, unreadCount: 0, unreadCapped: false });
  });
  [m] = view.room.messages;
  assert.deepEqual([m.deleted, m.message, m.version], [true, undefined, 4]);

  // Two reactions to another message cross on the way.
  await act(() => {
    last().receive('message_received', M(1, { messageId: '01B', message: 'two' }));
    last().receive('reaction_update', reacted(3, { '🎉': 2 }, '01B'));
    last().receive('reaction_update', reacted(2, { '🎉': 1 }, '01B'));
  });
  assert.deepEqual(view.room.messages[1].reactions, { '🎉': 2 });
  await act(() => root.unmount());
});

test('useRoom: a rejoin\'s changed messages update the older ones held, and add none', { skip }, async () => {
  const view = await lobbyView();
  const { clock, last, root } = view;
  const M = (messageId, version, extra = {}) => ({ messageId, roomId: 'lobby', userId: 'bob', name: 'Bob', message: messageId, timestamp: 't', version, ...extra });
  await act(() => last().receive('chat_history', { roomId: 'lobby', messages: [M('01A', 1), M('01B', 1)], hasMore: false, unreadCount: 0, unreadCapped: false }));
  await act(() => last().drop());
  await act(() => clock.advance(1000));
  await act(() => last().open());
  const since = last().frames()[0].data.since;
  // Away: a moderator deleted 01A, someone reacted to 01B; 01 (older than anything held) was edited.
  await act(() => last().receive('chat_history', {
    roomId: 'lobby', messages: [M('01C', 1)], hasMore: false, unreadCount: 1, unreadCapped: false, since,
    changed: [M('01B', 2, { reactions: { '👍': 1 } }), M('01A', 2, { message: undefined, deleted: true, deletedBy: 'mod' }), M('01', 2, { message: 'x' })],
    moreChanged: false,
  }));
  const [a, b, c] = view.room.messages;
  assert.deepEqual(view.room.messages.map((m) => m.messageId), ['01A', '01B', '01C']);
  assert.deepEqual([a.deleted, a.deletedBy, a.message, a.version], [true, 'mod', undefined, 2]);
  assert.deepEqual([b.reactions, b.version, c.version], [{ '👍': 1 }, 2, 1]);
  await act(() => root.unmount());
});

test('useRooms: asks on connect, lists, pages with loadMore, refreshes after a reconnect', { skip }, async () => {
  const { client, last, clock } = makeClient();
  let rooms;
  function List() {
    rooms = P.useRooms({ limit: 2 });
    return null;
  }
  const root = await render(h(P.WebSocketProvider, { client }, h(List)));
  await act(() => last().open());
  assert.deepEqual(last().frames(), [{ type: 'get_rooms', data: { limit: 2 } }]);
  const r = (roomId, unreadCount) => ({ roomId, unreadCount, unreadCapped: false, lastMessage: null });
  await act(() => last().receive('rooms_list', { rooms: [r('a', 1), r('b', 0)], nextCursor: 'k' }));
  assert.deepEqual(rooms.rooms.map((x) => x.roomId), ['a', 'b']);
  assert.equal(rooms.nextCursor, 'k');
  await act(() => rooms.loadMore());
  assert.deepEqual(last().frames().at(-1), { type: 'get_rooms', data: { limit: 2, cursor: 'k' } });
  await act(() => last().receive('rooms_list', { rooms: [r('c', 5)], nextCursor: null }));
  assert.deepEqual(rooms.rooms.map((x) => x.roomId), ['a', 'b', 'c']);
  await act(() => rooms.loadMore());
  assert.equal(last().frames().length, 2, 'no next page: nothing asked');
  await act(() => last().drop(1006));
  await act(() => clock.advance(5000));
  await act(() => last().open());
  assert.deepEqual(last().frames(), [{ type: 'get_rooms', data: { limit: 2 } }]);
  await act(() => last().receive('rooms_list', { rooms: [r('c', 0)], nextCursor: null }));
  assert.deepEqual(rooms.rooms.map((x) => x.roomId), ['c'], 'a refresh replaces the list');
  await act(() => root.unmount());
});

test('useParticipants: the room\'s list and count from the client, paged with loadMore; useRoom shows the same count', { skip }, async () => {
  const { client, last } = makeClient();
  let members, room;
  function Members({ id }) {
    members = P.useParticipants(id);
    return h('ul', null, members.participants.map((p) => h('li', { key: p.userId }, p.name)));
  }
  function Room({ id }) {
    room = P.useRoom(id);
    return h(Members, { id });
  }
  const root = await render(h(P.WebSocketProvider, { client }, h(Room, { id: 'hall' })));
  assert.deepEqual([members.participants, members.count, members.hasMore, members.loading], [[], 0, false, false]);
  members.loadMore(); // nothing to load yet: no frame, no throw
  await act(() => last().open());
  const ann = { userId: 'ann', name: 'Ann' };
  await act(() => {
    last().receive('participants_list', { roomId: 'hall', participants: [ann], count: 250, nextCursor: 'C1' });
    last().receive('chat_history', { roomId: 'hall', messages: [], hasMore: false });
  });
  assert.deepEqual([members.participants, members.count, members.hasMore], [[ann], 250, true]);
  assert.equal(room.participantCount, 250);

  await act(() => members.loadMore({ limit: 100 }));
  assert.deepEqual(last().frames().at(-1), { type: 'get_participants', data: { roomId: 'hall', cursor: 'C1', limit: 100 } });
  assert.equal(members.loading, true);
  members.loadMore(); // on its way: ignored
  assert.equal(last().frames().filter((f) => f.type === 'get_participants').length, 1);
  await act(() => last().receive('participants_list', { roomId: 'hall', participants: [{ userId: 'bob', name: 'Bob' }], count: 250, nextCursor: 'C2' }));
  assert.deepEqual(members.participants.map((p) => p.userId), ['ann', 'bob']);
  assert.equal(members.loading, false);

  await act(() => {
    last().receive('typing_update', { roomId: 'hall', userId: 'bob', isTyping: true });
    last().receive('presence_update', { roomId: 'hall', joined: [{ userId: 'cat', name: 'Cat' }], left: [{ userId: 'bob', name: 'Bob' }], joinedCount: 1, leftCount: 1, count: 250 });
  });
  assert.deepEqual(members.participants.map((p) => p.userId), ['ann', 'cat']);
  assert.deepEqual(room.participants.map((p) => p.userId), ['ann', 'cat']);
  assert.deepEqual(room.typingUsers, [], 'who left stops typing');
  assert.deepEqual(root.toJSON().children.map((li) => li.children[0]), ['Ann', 'Cat']);
  await act(() => root.unmount());
});
