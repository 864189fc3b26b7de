// ids.js: clientMessageIds, so that a re-sent chat_message is stored once.

/** A v4-shaped UUID: crypto.randomUUID when available, else drawn from `random` (tests pass a seeded one). */
export function randomId(random = Math.random) {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function' && random === Math.random) return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(random() * 16).toString(16);
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-${s.slice(16, 20)}-${s.slice(20, 32)}`;
}
