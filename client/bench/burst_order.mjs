// What per-sender order costs: a burst of N chat messages from one connection, over a network
// with a given round trip, pipelined (every frame at once, as a raw WebSocket client sends them)
// versus ordered (ParleyClient: one chat_message per room in flight, the next after its chat_update).
//
//   node --experimental-websocket client/bench/burst_order.mjs [--n 10] [--rounds 5] [--rtt-ms 50] [--url ws://127.0.0.1:3001/local]
//
// Without --url it starts its own `parley dev` (.venv/bin/parley, embedded moto) on a free port,
// with ChatRateLimit raised so that the per-user rate limit does not interfere, and stops it at
// the end. The round trip is added on the client side: every frame is held rtt/2 ms on its way
// out and rtt/2 ms on its way in (first in, first out), on top of the real local stack.
// It prints, per mode: time from the first send until the other member has all N messages
// (median and max over the rounds), and in how many rounds that member got them out of order,
// by arrival and by messageId (the order a UI that sorts by id shows).

import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { ParleyClient } from '../parley-client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROUND_TIMEOUT_MS = 60_000;

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '5' },
    'rtt-ms': { type: 'string', default: '50' },
    url: { type: 'string' },
  },
});
const N = Number(args.n);
const ROUNDS = Number(args.rounds);
const RTT = Number(args['rtt-ms']);

if (typeof globalThis.WebSocket !== 'function') {
  console.error('no global WebSocket: run with `node --experimental-websocket` (Node 20/21) or Node >= 22');
  process.exit(2);
}

/** A WebSocket whose frames each wait oneWayMs in each direction, in order. */
function delayedWebSocket(oneWayMs) {
  return class DelayedWebSocket {
    constructor(url) {
      this.readyState = 0;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      const ws = (this._ws = new WebSocket(url));
      const later = (fn) => setTimeout(fn, oneWayMs);
      ws.onopen = () => later(() => ((this.readyState = 1), this.onopen && this.onopen({})));
      ws.onmessage = (ev) => later(() => this.onmessage && this.onmessage({ data: ev.data }));
      ws.onerror = (ev) => this.onerror && this.onerror(ev);
      ws.onclose = (ev) => later(() => ((this.readyState = 3), this.onclose && this.onclose({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean })));
    }

    send(data) {
      setTimeout(() => this._ws.readyState === 1 && this._ws.send(data), oneWayMs);
    }

    close(code, reason) {
      this._ws.close(code, reason);
    }
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

async function waitFor(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

async function startGateway() {
  const port = await freePort();
  const proc = spawn(
    path.join(ROOT, '.venv', 'bin', 'parley'),
    ['dev', '--port', String(port), '--stage', 'local', '--quiet', '--parameter-overrides', 'ChatRateLimit=100000'],
    { cwd: ROOT, stdio: 'ignore', detached: true },
  );
  const http = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try {
      return (await fetch(`${http}/dev/token?user=probe`)).ok;
    } catch {
      return false;
    }
  }, 120_000, 'parley dev');
  return { url: `ws://127.0.0.1:${port}/local`, stop: () => process.kill(-proc.pid, 'SIGTERM') };
}

async function token(wsUrl, user) {
  const base = wsUrl.replace(/^ws/, 'http').replace(/\/[^/]*$/, '');
  const res = await fetch(`${base}/dev/token?user=${encodeURIComponent(user)}`);
  return (await res.json()).token;
}

async function client(wsUrl, user) {
  const c = new ParleyClient({ url: wsUrl, token: await token(wsUrl, user), WebSocketImpl: delayedWebSocket(RTT / 2) });
  await c.connect();
  return c;
}

function joined(c, roomId) {
  return new Promise((resolve) => {
    const onHistory = (d) => {
      if (d.roomId !== roomId) return;
      c.off('chat_history', onHistory);
      resolve();
    };
    c.on('chat_history', onHistory);
    c.joinRoom(roomId);
  });
}

const sorted = (xs) => xs.every((x, i) => i === 0 || xs[i - 1] < x);

async function round(wsUrl, mode, r) {
  const roomId = `burst-${mode}-${r}-${Math.random().toString(36).slice(2, 8)}`;
  const sender = await client(wsUrl, `sender-${r}`);
  const observer = await client(wsUrl, `observer-${r}`);
  await Promise.all([joined(sender, roomId), joined(observer, roomId)]);
  const arrived = [];
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${mode} round ${r}: ${arrived.length}/${N} after ${ROUND_TIMEOUT_MS} ms`)), ROUND_TIMEOUT_MS);
    observer.on('message_received', (m) => {
      if (m.roomId !== roomId) return;
      arrived.push(m);
      if (arrived.length === N) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    if (mode === 'ordered') sender.sendChatMessage(roomId, String(i));
    else sender.sendRaw(JSON.stringify({ type: 'chat_message', data: { roomId, message: String(i), clientMessageId: `${roomId}-${i}` } }));
  }
  await done;
  const ms = performance.now() - t0;
  sender.close();
  observer.close();
  const byArrival = arrived.map((m) => Number(m.message));
  const byId = [...arrived].sort((a, b) => (a.messageId < b.messageId ? -1 : 1)).map((m) => Number(m.message));
  return { ms, arrivalInOrder: sorted(byArrival), idInOrder: sorted(byId), byId };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const gw = args.url ? { url: args.url, stop: () => {} } : await startGateway();
  try {
    console.log(`burst of ${N} chat messages, ${RTT} ms round trip added, ${ROUNDS} rounds per mode, against ${gw.url}`);
    console.log('mode       | median ms | max ms | per message ms | rounds out of order (arrival) | (messageId) | example messageId order');
    for (const mode of ['pipelined', 'ordered']) {
      const results = [];
      for (let r = 0; r < ROUNDS; r++) results.push(await round(gw.url, mode, r));
      const ms = results.map((x) => x.ms);
      const badArrival = results.filter((x) => !x.arrivalInOrder).length;
      const badId = results.filter((x) => !x.idInOrder);
      const example = (badId[0] || results[0]).byId.join(',');
      console.log(
        `${mode.padEnd(10)} | ${median(ms).toFixed(0).padStart(9)} | ${Math.max(...ms).toFixed(0).padStart(6)} | ${(median(ms) / N).toFixed(1).padStart(14)} | ${String(badArrival).padStart(29)} | ${String(badId.length).padStart(11)} | ${example}`,
      );
    }
  } finally {
    gw.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
