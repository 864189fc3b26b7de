// Compiled (never run) by test/types.test.mjs: the declarations describe real usage.
import { MAX_CLIENT_FRAME_BYTES, ParleyClient, ParleyConnectionError, RoomMessages, versionOf, type Message, type ServerFrames } from '../parley-client.js';
import { WebSocketProvider, useRoom, useWebSocket } from '../react/parley-react.js';

const client = new ParleyClient({
  url: 'ws://127.0.0.1:3001/local',
  tokenProvider: async () => 'jwt',
  backoff: { initialMs: 250, maxMs: 10_000 },
  pingIntervalMs: 60_000,
  maxQueue: 50,
  tokenTimeoutMs: 5_000,
  ackTimeoutMs: 20_000,
});
const limit: number = MAX_CLIENT_FRAME_BYTES;
const stopped: ParleyConnectionError | null = client.lastError;
void [limit, stopped];

client.on('message_received', (m) => {
  const id: string = m.messageId;
  const text: string = 'deleted' in m ? '(deleted)' : m.message; // a tombstone answers a retry of a deleted message
  void id, text;
});
client.on('chat_update', (u) => {
  if (u.status === 'delivered') {
    const n: number = u.deliveredTo;
    void n;
  } else if (u.status === 'sent') {
    const n: number = u.recipients;
    void n;
  } else {
    const who: string = u.userId;
    void who;
  }
});
client.on('error', (e) => {
  const retry: number | undefined = e.retryAfterMs;
  void retry;
});
client.on('disconnect', ({ code, willReconnect }) => void [code, willReconnect]);
client.on('reconnecting', ({ attempt, delayMs, error }) => void [attempt, delayMs, error?.code]);
client.on('connect_error', (err: ParleyConnectionError) => void err.code);
client.on('participants_list', (d) => d.participants.map((p) => p.name));

const cmid: string = client.sendChatMessage('lobby', 'hi');
const cmid2: string = client.send('chat_message', { roomId: 'lobby', message: 'x' });
client.send('join_room', { roomId: 'lobby', since: '01H' });
client.joinRoom('lobby', { limit: 20 });
client.setTyping('lobby', true);
client.markRead('lobby', '01H');
client.getHistory('lobby', '01H');
client.sendMessage({ type: 'chat_message', data: { roomId: 'lobby', message: 'seed format' } });
client.send('custom_type', { a: 1 });
void [cmid, cmid2];

// @ts-expect-error: typing needs isTyping
client.send('typing', { roomId: 'lobby' });

const history: ServerFrames['chat_history'] = { roomId: 'r', messages: [] as Message[], hasMore: false };
void history;

export function Chat({ roomId }: { roomId: string }) {
  const { isConnected, sendMessage, on } = useWebSocket();
  const { messages, participants, typingUsers, send } = useRoom(roomId);
  const off = on('pong', (d) => void d.timestamp);
  off();
  sendMessage({ type: 'message', data: { message: { hello: 1 } } });
  const id: string = send('hello');
  void [isConnected, messages[0]?.name, participants.length, typingUsers.join(), id];
  return null;
}

export const app = WebSocketProvider({ url: 'ws://127.0.0.1:3001/local', token: 'jwt', children: null });

// Issue 13: edit/delete/react, rooms and DMs.
import { dmRoomId, type RoomSummary } from '../parley-client.js';
import { useRooms } from '../react/parley-react.js';

const dm: string = dmRoomId('ann', 'bob');
client.editMessage(dm, '01JCGW5Z8Q6V3R2N1M0K9J8H7G', 'fixed');
client.deleteMessage(dm, '01JCGW5Z8Q6V3R2N1M0K9J8H7G');
client.react(dm, '01JCGW5Z8Q6V3R2N1M0K9J8H7G', '👍', { remove: true });
client.getRooms({ limit: 10, cursor: 'x' });
const me: string | null = client.userId;
client.on('reaction_update', (u) => {
  const action: 'added' | 'removed' = u.action;
  const n: number | undefined = u.counts['👍'];
  void action, n, me;
});
client.on('rooms_list', (l) => {
  const first: RoomSummary | undefined = l.rooms[0];
  const unread: number | undefined = first?.unreadCount;
  const next: string | null = l.nextCursor;
  void unread, next;
});
client.on('error', (e) => {
  if (e.code === 'forbidden') {
    const action: 'read' | 'write' | 'moderate' | undefined = e.action;
    void action;
  }
});

export function RoomsPanel() {
  const { rooms, loadMore, nextCursor } = useRooms({ limit: 20 });
  const room = useRoom(rooms[0]?.roomId);
  room.edit('01JCGW5Z8Q6V3R2N1M0K9J8H7G', 'x');
  room.remove('01JCGW5Z8Q6V3R2N1M0K9J8H7G');
  room.react('01JCGW5Z8Q6V3R2N1M0K9J8H7G', '🎉');
  const unread: number = room.unreadCount;
  const capped: boolean = room.unreadCapped;
  void unread, capped, nextCursor, loadMore;
  return null;
}

// Issue 12: a room's participants and count.
import { type ParticipantsState } from '../parley-client.js';
import { useParticipants } from '../react/parley-react.js';

const known: ParticipantsState = client.participants('lobby');
const online: number = known.count;
if (known.hasMore && !known.loading) client.loadMoreParticipants('lobby', { limit: 50 });
client.on('participants', (state) => void [state.roomId, state.participants[0]?.name, state.count]);
client.on('presence_update', (d) => void [d.joined.length, d.joinedCount, d.count]);
void online;

export function Members({ roomId }: { roomId: string }) {
  const { participants, count, hasMore, loading, loadMore } = useParticipants(roomId);
  const { participantCount } = useRoom(roomId);
  if (hasMore && !loading) loadMore({ limit: 100 });
  void [participants.map((p) => p.userId), count, participantCount];
  return null;
}

// One room's messages kept at their newest version, as useRoom and /ws-test keep them.
const held = new RoomMessages({ pendingLimit: 50 });
client.on('chat_history', (d) => {
  for (const m of d.messages) held.put(m);
});
client.on('reaction_update', (d) => {
  const changed: boolean = held.change('reaction_update', d);
  const v: number = versionOf(d);
  void changed, v;
});
const newest: number = versionOf(held.list()[0]);
void newest;
