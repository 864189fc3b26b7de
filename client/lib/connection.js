// connection.js: one logical connection over successive WebSockets.
//
// The state machine: idle -> connecting -> open -> reconnecting -> open ...
// -> closed. It owns the socket, the token (and tokenProvider), the
// reconnect backoff, the connect timeout and the keep-alive ping. It knows
// nothing of rooms or queued frames: it tells its owner through hooks
// (`opened`, `frame`, `down`) and reports to the app through `emit`.
//
// Handshake refusal (HTTP 401/403): a browser never sees the HTTP status of
// a refused WebSocket handshake; it only sees `close` (code 1006) without any
// `open` before it. "Closed before open" therefore means:
//   - on `connect()` (the first attempt, or after `close()`): a refusal.
//     `connect()` rejects with a ParleyConnectionError (code "refused"),
//     `connect_error` is emitted, and nothing is retried. A wrong token, a
//     wrong Origin and a wrong URL all look like this, and no retry fixes any
//     of them;
//   - on a reconnect (the socket had been open): the server may just be
//     down (a restarted gateway), so it is retried with backoff, unless the
//     token is known to be unusable: a fixed token whose `exp` has passed.
//
// Tokens: a `tokenProvider` is asked before every attempt. When it throws,
// rejects or does not answer within `tokenTimeoutMs`, the token server is
// as unreachable as a down gateway (locally they are the same process), so
// the attempt is retried with the same backoff. Only a token that cannot
// work even though it was just fetched is terminal: the provider returned
// nothing, or a token whose `exp` has passed (`unauthorized`), or the first
// attempt of `connect()` with it was refused (`refused`).

import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { ParleyConnectionError } from './errors.js';
import { tokenExpired, withToken } from './token.js';

// API Gateway drops a connection idle for 10 minutes.
export const MAX_PING_INTERVAL_MS = 9 * 60 * 1000;
const OPEN = 1;

export class Connection {
  /**
   * @param {object} options the connection part of ParleyClientOptions
   * @param {object} hooks {emit(type, ...args), opened(), frame(raw), down()}
   */
  constructor(options, hooks) {
    const {
      url,
      token = null,
      tokenProvider = null,
      reconnect = true,
      backoff = {},
      pingIntervalMs = 5 * 60 * 1000,
      connectTimeoutMs = 15000,
      tokenTimeoutMs = 10000,
      retryInitialConnect = false,
      maxReconnectAttempts = Infinity,
      WebSocketImpl,
      timers,
      random = Math.random,
      now = () => Date.now(),
    } = options;
    this.url = url;
    this.token = token;
    this.tokenProvider = tokenProvider;
    this.reconnectEnabled = reconnect !== false;
    this.backoff = { ...DEFAULT_BACKOFF, ...backoff };
    this.pingIntervalMs = Math.max(1, Math.min(pingIntervalMs || MAX_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS));
    this.connectTimeoutMs = connectTimeoutMs;
    this.tokenTimeoutMs = tokenTimeoutMs;
    this.retryInitialConnect = retryInitialConnect;
    this.maxReconnectAttempts = maxReconnectAttempts;
    this._WS = WebSocketImpl;
    this._t = timers;
    this._random = random;
    this._now = now;
    this._hooks = hooks;

    this._ws = null;
    this._state = 'idle'; // idle | connecting | open | reconnecting | closed
    this._everOpened = false; // this connect() cycle has had an open socket
    this._attempt = 0; // reconnect attempts since the last open
    this._cycle = 0; // bumps on every attempt, so a late tokenProvider answer is ignored
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._connectTimer = null;
    this._tokenTimer = null;
    this._connectWaiters = [];
    this._lastClose = null;
    this._lastError = null; // the connect_error that stopped it, until the next open
  }

  get state() {
    return this._state;
  }

  get attempt() {
    return this._attempt;
  }

  /** The ParleyConnectionError that closed the connection for good; null once a socket opens again. */
  get lastError() {
    return this._lastError;
  }

  /** True when a frame written now goes out on an open socket (not one already closing). */
  get writable() {
    if (this._state !== 'open' || !this._ws) return false;
    return typeof this._ws.readyState !== 'number' || this._ws.readyState === OPEN;
  }

  /** True while open, even if the socket has started closing (join frames still go, as before). */
  get isOpen() {
    return this._state === 'open' && !!this._ws;
  }

  /** Write one text frame on the open socket. */
  send(raw) {
    this._ws.send(raw);
  }

  _emit(type, ...args) {
    this._hooks.emit(type, ...args);
  }

  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    this._emit('state', s);
  }

  connect() {
    if (this._state === 'open') return Promise.resolve();
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this._state === 'connecting' || this._state === 'reconnecting') return p;
    this._everOpened = false;
    this._attempt = 0;
    this._lastError = null; // a new cycle: the old failure no longer describes the connection
    this._open(false);
    return p;
  }

  close(code = 1000, reason = 'client closed') {
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    const wasOpen = this._state === 'open';
    this._setState('closed');
    this._rejectWaiters(new ParleyConnectionError('closed', 'closed by the client'));
    if (ws) {
      this._detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        /* ignore */
      }
    }
    this._hooks.down();
    if (wasOpen) this._emit('disconnect', { code, reason, wasClean: true, willReconnect: false });
  }

  _open(isReconnect) {
    this._setState(isReconnect ? 'reconnecting' : 'connecting');
    if (!this.tokenProvider) {
      this._openWith(this.token);
      return;
    }
    const cycle = ++this._cycle;
    const current = () => this._state !== 'closed' && cycle === this._cycle && this._ws === null;
    const unavailable = (err) => {
      if (!current()) return;
      this._t.clearTimeout(this._tokenTimer);
      this._tokenTimer = null;
      this._cycle += 1; // a late answer from this provider call is ignored
      const cause = new ParleyConnectionError('token_unavailable', `tokenProvider failed: ${err && err.message}`, { cause: err });
      this._retry(null, cause);
    };
    let result;
    try {
      result = this.tokenProvider();
    } catch (err) {
      unavailable(err);
      return;
    }
    this._tokenTimer = this._t.setTimeout(() => {
      this._tokenTimer = null;
      unavailable(new Error(`no token within ${this.tokenTimeoutMs} ms`));
    }, this.tokenTimeoutMs);
    Promise.resolve(result).then((t) => {
      if (!current()) return;
      this._t.clearTimeout(this._tokenTimer);
      this._tokenTimer = null;
      if (!t) return this._fail(new ParleyConnectionError('unauthorized', 'tokenProvider returned no token'));
      this.token = t;
      if (tokenExpired(t, this._now())) return this._fail(new ParleyConnectionError('unauthorized', 'tokenProvider returned a token that has already expired'));
      this._openWith(t);
    }, unavailable);
  }

  _openWith(token) {
    if (!this.tokenProvider && tokenExpired(token, this._now())) {
      this._fail(new ParleyConnectionError('unauthorized', 'the token has expired'));
      return;
    }
    let ws;
    try {
      ws = new this._WS(withToken(this.url, token));
    } catch (err) {
      this._fail(new ParleyConnectionError('invalid_url', `cannot open ${this.url}: ${err && err.message}`, { cause: err }));
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      this._t.clearTimeout(this._connectTimer);
      this._connectTimer = null;
      this._onOpen();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._hooks.frame(ev.data);
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onClose(ev || {}, opened);
    };
    this._connectTimer = this._t.setTimeout(() => {
      this._connectTimer = null;
      if (this._ws !== ws || opened) return;
      this._detach(ws);
      this._ws = null;
      try {
        ws.close();
      } catch {
        /* ignore */
      }
      this._onClose({ code: 1006, reason: 'connect timeout', wasClean: false, timeout: true }, false);
    }, this.connectTimeoutMs);
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  _onOpen() {
    this._everOpened = true;
    this._attempt = 0;
    this._lastError = null;
    this._setState('open');
    this._schedulePing();
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.resolve();
    this._emit('connect');
    this._hooks.opened();
  }

  _onClose(ev, opened) {
    this._t.clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._stopPing();
    this._hooks.down();
    const info = { code: ev.code ?? 1006, reason: ev.reason || '', wasClean: !!ev.wasClean };
    this._lastClose = info;
    if (this._state === 'closed') return;

    if (opened) {
      const willReconnect = this.reconnectEnabled;
      this._emit('disconnect', { ...info, willReconnect });
      if (willReconnect) this._scheduleReconnect();
      else this._setState('closed');
      return;
    }

    // Closed before it ever opened: the handshake was refused or the server is unreachable.
    if (!this._everOpened && !this.retryInitialConnect) {
      this._fail(
        new ParleyConnectionError(
          ev.timeout ? 'timeout' : 'refused',
          ev.timeout
            ? `no answer from ${this.url} within ${this.connectTimeoutMs} ms`
            : `the connection to ${this.url} was refused (HTTP 401/403: bad or expired token, or Origin not allowed) or the server is unreachable`,
          { closeCode: info.code },
        ),
      );
      return;
    }
    // A fixed token past its `exp` is refused for sure; a tokenProvider gets a fresh one next time.
    if (!this.tokenProvider && tokenExpired(this.token, this._now())) {
      this._fail(new ParleyConnectionError('unauthorized', 'the token has expired; the server refuses it (401)', { closeCode: info.code }));
      return;
    }
    this._retry(info, null);
  }

  /**
   * An attempt failed in a way a later attempt may not (`info`: the socket's close; `error`: a
   * token that could not be fetched): back off and try again, or stop if reconnecting is off.
   */
  _retry(info, error) {
    if (!this.reconnectEnabled) {
      this._fail(error || new ParleyConnectionError('refused', 'connection failed', { closeCode: info.code }));
      return;
    }
    this._scheduleReconnect(error);
  }

  _fail(err) {
    this._clearTimers();
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      this._detach(ws);
      try {
        ws.close();
      } catch {
        /* ignore */
      }
    }
    this._hooks.down();
    this._lastError = err;
    this._setState('closed');
    this._emit('connect_error', err);
    this._rejectWaiters(err);
  }

  _rejectWaiters(err) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  _scheduleReconnect(error = null) {
    if (this._attempt >= this.maxReconnectAttempts) {
      this._fail(new ParleyConnectionError('gave_up', `gave up after ${this._attempt} reconnect attempts`));
      return;
    }
    const delayMs = backoffDelay(this._attempt, this.backoff, this._random);
    this._attempt += 1;
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs, lastClose: this._lastClose, error });
    this._reconnectTimer = this._t.setTimeout(() => {
      this._reconnectTimer = null;
      this._open(true);
    }, delayMs);
  }

  _clearTimers() {
    this._t.clearTimeout(this._reconnectTimer);
    this._t.clearTimeout(this._connectTimer);
    this._t.clearTimeout(this._tokenTimer);
    this._reconnectTimer = this._connectTimer = this._tokenTimer = null;
    this._stopPing();
  }

  _schedulePing() {
    this._stopPing();
    this._pingTimer = this._t.setTimeout(() => {
      this._pingTimer = null;
      if (this._state !== 'open') return;
      this._hooks.ping();
      this._schedulePing();
    }, this.pingIntervalMs);
  }

  _stopPing() {
    this._t.clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }
}
