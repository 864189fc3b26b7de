// A ParleyClient on a fake WebSocket and a manual clock, with every event it emits recorded.
import { ParleyClient, SERVER_TYPES } from '../parley-client.js';
import { FakeClock, makeFakeWebSocket } from './fakes.mjs';

export const URL_ = 'ws://127.0.0.1:3001/local';

export function setup(opts = {}) {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  let n = 0;
  const randoms = opts.randoms ? [...opts.randoms] : null;
  const client = new ParleyClient({
    url: URL_,
    token: 'tok',
    WebSocketImpl: WS,
    timers: clock,
    now: () => clock.now,
    random: () => (randoms && randoms.length ? randoms.shift() : 0.5),
    generateId: () => `cmid-${++n}`,
    ...opts.client,
  });
  const events = [];
  for (const t of ['connect', 'disconnect', 'reconnecting', 'connect_error', ...SERVER_TYPES]) client.on(t, (d) => events.push([t, d]));
  return { clock, WS, client, events, last: () => WS.instances[WS.instances.length - 1] };
}

export async function connected(opts) {
  const s = setup(opts);
  const p = s.client.connect();
  await Promise.resolve(); // a tokenProvider answers in a microtask
  await new Promise((r) => setImmediate(r));
  s.last().open();
  await p;
  return s;
}

export const msg = (roomId, messageId, extra = {}) => ({
  messageId,
  roomId,
  userId: 'bob',
  name: 'Bob',
  message: `m ${messageId}`,
  timestamp: '2025-01-01T00:00:00.000Z',
  ...extra,
});

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** The n-th message's ULID: one per millisecond, so that each has a time of its own to rewind from. */
export const messageIdAt = (n) => {
  let t = 1_700_000_000_000 + n;
  let head = '';
  for (let i = 0; i < 10; i++) {
    head = CROCKFORD[t % 32] + head;
    t = Math.floor(t / 32);
  }
  return `${head}${'0'.repeat(15)}1`;
};
