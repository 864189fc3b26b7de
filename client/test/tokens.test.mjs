// A tokenProvider that fails is retried with the backoff; only an unusable fresh token is terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fakeJwt, tick } from '../test-support/fakes.mjs';
import { URL_, connected, setup } from '../test-support/harness.mjs';

/** A provider scripted per call: a string is a token, an Error is thrown, 'reject'/'hang' as named. */
function scripted(steps) {
  const calls = [];
  const provider = () => {
    const step = steps.length ? steps.shift() : 'hang';
    calls.push(step);
    if (step instanceof Error) throw step;
    if (step === 'reject') return Promise.reject(new TypeError('Failed to fetch'));
    if (step === 'hang') return new Promise(() => {});
    return Promise.resolve(step);
  };
  return { provider, calls };
}

function stateLog(client) {
  const states = [];
  client.on('state', (s) => states.push(s));
  return states;
}

test('a provider that rejects while the gateway is down is retried with the backoff, then reconnects', async () => {
  const { provider, calls } = scripted(['t1', 'reject', new Error('boom'), 't2']);
  const s = await connected({ client: { token: null, tokenProvider: provider, backoff: { initialMs: 100, maxMs: 1000 } }, randoms: Array(10).fill(0.999999) });
  const states = stateLog(s.client);
  s.last().drop(1001, 'Going away');
  const reconnecting = () => s.events.filter((e) => e[0] === 'reconnecting').map((e) => e[1]);
  assert.equal(reconnecting().length, 1);
  s.clock.advance(99); // attempt 1: the provider rejects
  await tick();
  assert.equal(reconnecting().length, 2);
  assert.equal(reconnecting()[1].error.code, 'token_unavailable');
  assert.match(reconnecting()[1].error.message, /Failed to fetch/);
  assert.equal(reconnecting()[1].delayMs, 199, 'the second delay of the same backoff');
  s.clock.advance(199); // attempt 2: the provider throws
  await tick();
  assert.equal(reconnecting().length, 3);
  assert.equal(reconnecting()[2].delayMs, 399);
  assert.equal(s.client.state, 'reconnecting');
  assert.equal(s.client.lastError, null, 'not stopped: no error to show as final');
  s.clock.advance(399); // attempt 3: a token, a socket
  await tick();
  assert.equal(s.WS.instances.length, 2);
  assert.equal(s.last().url, `${URL_}?token=t2`);
  s.last().open();
  assert.equal(s.client.state, 'open');
  assert.equal(s.client.reconnectAttempts, 0);
  assert.equal(calls.length, 4, 'one provider call per attempt');
  assert.deepEqual(states, ['reconnecting', 'open'], 'never closed on the way');
  assert.equal(s.events.filter((e) => e[0] === 'connect_error').length, 0);
});

test('a provider that never answers times out and is retried; its late answer is ignored', async () => {
  let resolveLate;
  const calls = [];
  const provider = () => {
    calls.push(calls.length);
    if (calls.length === 2) return new Promise((r) => (resolveLate = r));
    return Promise.resolve(`t${calls.length}`);
  };
  const s = await connected({ client: { token: null, tokenProvider: provider, tokenTimeoutMs: 5000 } });
  s.last().drop();
  s.clock.advance(250); // attempt 1 asks the provider, which hangs
  await tick();
  assert.equal(calls.length, 2);
  s.clock.advance(4999);
  await tick();
  assert.equal(s.events.filter((e) => e[0] === 'reconnecting').length, 1, 'still waiting for the token');
  s.clock.advance(1);
  await tick();
  const r = s.events.filter((e) => e[0] === 'reconnecting').at(-1)[1];
  assert.equal(r.attempt, 2);
  assert.match(r.error.message, /no token within 5000 ms/);
  resolveLate('late-token'); // too late: must not open a socket
  await tick();
  assert.equal(s.WS.instances.length, 1);
  s.clock.advance(r.delayMs);
  await tick();
  assert.equal(s.WS.instances.length, 2);
  assert.equal(s.last().url, `${URL_}?token=t3`);
});

test('a provider failing on the first connect() is retried too, and connect() resolves once open', async () => {
  const { provider } = scripted(['reject', 'tok-ok']);
  const s = setup({ client: { token: null, tokenProvider: provider } });
  let settled = null;
  s.client.connect().then(() => (settled = 'resolved'), (e) => (settled = e));
  await tick();
  assert.equal(s.client.state, 'reconnecting');
  assert.equal(s.WS.instances.length, 0);
  s.clock.advance(250);
  await tick();
  s.last().open();
  await tick();
  assert.equal(settled, 'resolved');
});

test('with a provider, an expired previous token is not terminal: a fresh one is fetched', async () => {
  const old = fakeJwt({ sub: 'a', exp: 100 });
  const fresh = fakeJwt({ sub: 'a', exp: 10_000 });
  const { provider } = scripted([old, fresh]);
  const s = await connected({ client: { token: null, tokenProvider: provider } });
  s.clock.now = 200 * 1000; // the first token expired while connected
  s.last().drop();
  s.clock.advance(1000);
  await tick();
  assert.equal(s.WS.instances.length, 2);
  assert.equal(s.last().url, `${URL_}?token=${fresh}`);
});

test('a fresh token that is already expired, or no token at all, is terminal', async () => {
  for (const [step, why] of [[fakeJwt({ sub: 'a', exp: 1 }), /already expired/], ['', /no token/]]) {
    const { provider } = scripted(['t1', step]);
    const s = await connected({ client: { token: null, tokenProvider: provider } });
    s.clock.now = 5000;
    s.last().drop();
    s.clock.advance(1000);
    await tick();
    assert.equal(s.client.state, 'closed');
    const err = s.events.find((e) => e[0] === 'connect_error')[1];
    assert.equal(err.code, 'unauthorized');
    assert.match(err.message, why);
    assert.equal(s.client.lastError, err);
    s.clock.advance(3600 * 1000);
    assert.equal(s.WS.instances.length, 1, 'never retried');
  }
});

test('with reconnect: false a failing provider ends with connect_error token_unavailable', async () => {
  const { provider } = scripted(['reject']);
  const s = setup({ client: { token: null, tokenProvider: provider, reconnect: false } });
  await assert.rejects(s.client.connect(), (e) => e.code === 'token_unavailable');
  assert.equal(s.client.state, 'closed');
});

test('lastError is cleared by a new connect() and by an open socket', async () => {
  const s = setup();
  const first = s.client.connect();
  s.last().refuse();
  await assert.rejects(first, (e) => e.code === 'refused');
  assert.equal(s.client.lastError.code, 'refused');
  const p = s.client.connect();
  assert.equal(s.client.lastError, null);
  assert.equal(s.client.state, 'connecting');
  s.last().open();
  await p;
  assert.equal(s.client.lastError, null);
});
