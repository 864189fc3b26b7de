// ids.js: clientMessageIds, so that a re-sent chat_message is stored once, and
// positions in a room's history (messageIds are ULIDs: time first).

/** A v4-shaped UUID: crypto.randomUUID when available, else drawn from `random` (tests pass a seeded one). */
export function randomId(random = Math.random) {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function' && random === Math.random) return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(random() * 16).toString(16);
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-${s.slice(16, 20)}-${s.slice(20, 32)}`;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ULID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/; // as the server checks a messageId

/** True for a string the server takes as a messageId (a history position such as `since`). */
export function isMessageId(id) {
  return typeof id === 'string' && ULID_RE.test(id);
}

/**
 * The history position `ms` milliseconds before the messageId `id`: the smallest ULID of that
 * millisecond. An id that is not a ULID is returned as it is (there is no time in it to go back).
 */
export function rewindMessageId(id, ms) {
  if (!isMessageId(id) || !(ms > 0)) return id;
  ms = Math.floor(ms);
  let t = 0;
  for (const ch of id.slice(0, 10)) t = t * 32 + CROCKFORD.indexOf(ch);
  t = Math.max(0, t - ms);
  let head = '';
  for (let i = 0; i < 10; i++) {
    head = CROCKFORD[t % 32] + head;
    t = Math.floor(t / 32);
  }
  return head + '0'.repeat(16);
}
