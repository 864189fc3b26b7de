// Compiled (never run) by test/types.test.mjs: the declarations describe real usage.
import { MAX_CLIENT_FRAME_BYTES, ParleyClient, ParleyConnectionError, type Message, type ServerFrames } from '../parley-client.js';
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
  const text: string = m.message;
  void id, text;
});
client.on('chat_update', (u) => {
  if (u.status === 'delivered') {
    const n: number = u.deliveredTo;
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
