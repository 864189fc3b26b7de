// parley-client.js: the Parley browser client (protocol version 1).
//
// A dependency-free ES module on top of the platform `WebSocket`. It speaks
// the wire contract in PROTOCOL.md: one JSON text frame `{type, data}` each
// way. It reconnects with capped exponential backoff and full jitter, pings
// every few minutes (API Gateway drops connections idle for 10 minutes),
// queues frames while disconnected (bounded), rejoins its rooms with `since`
// set to the newest messageId it saw in each, re-sends unacknowledged chat
// messages with their original clientMessageId (the server stores nothing
// twice) and drops duplicate `message_received` frames by messageId.
//
// Handshake refusal (HTTP 401/403): a browser never sees the HTTP status of a
// refused WebSocket handshake; it only sees `close` (code 1006) without any
// `open` before it. The client therefore treats "closed before open" as:
//   - on `connect()` (the first attempt, or after `close()`): a refusal.
//     `connect()` rejects with a ParleyConnectionError (code "refused"),
//     `connect_error` is emitted, and nothing is retried. A wrong token, a
//     wrong Origin and a wrong URL all look like this, and no retry fixes any
//     of them;
//   - on a reconnect (the socket had been open): the server may just be
//     down, so it is retried with backoff, unless the token is known to be
//     unusable: its `exp` has passed (the client reads the JWT's `exp`
//     without verifying it) or `tokenProvider` failed. Then the client stops
//     with `connect_error` (code "unauthorized") instead of retrying forever.
// Give a `tokenProvider` (async () => token) to fetch a fresh token before
// every attempt; `retryInitialConnect: true` opts into retrying the first
// connection too (e.g. an app that starts before the network is up).

export const PROTOCOL_VERSION = 1;

/** Every server-to-client frame type of PROTOCOL.md. */
export const SERVER_TYPES = Object.freeze([
  'message_response',
  'participants_list',
  'chat_history',
  'user_joined',
  'user_left',
  'message_received',
  'chat_update',
  'typing_update',
  'pong',
  'error',
]);

/** Every client-to-server frame type of PROTOCOL.md. */
export const CLIENT_TYPES = Object.freeze([
  'message',
  'join_room',
  'leave_room',
  'chat_message',
  'typing',
  'mark_read',
  'get_history',
  'ping',
]);

/** Events of the client itself (not frames). */
export const CLIENT_EVENTS = Object.freeze([
  'connect',
  'disconnect',
  'reconnecting',
  'connect_error',
  'state',
  'frame',
  'queue_overflow',
  '*',
]);

export const ROOM_ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

const MAX_PING_INTERVAL_MS = 9 * 60 * 1000;
const SEEN_PER_ROOM = 2000;
// Frames never queued while disconnected: rooms are rejoined from the
// client's own room set, typing is ephemeral, pings are pointless.
const NOT_QUEUED = new Set(['join_room', 'leave_room', 'typing', 'ping']);

export class ParleyError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = 'ParleyError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

export class ParleyConnectionError extends ParleyError {
  constructor(code, message, extra) {
    super(code, message, extra);
    this.name = 'ParleyConnectionError';
  }
}

/** Decode a JWT's payload without verifying it (for `exp` only). */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length < 2) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    let text;
    if (typeof atob === 'function') {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      text = new TextDecoder().decode(bytes);
    } else {
      // eslint-disable-next-line no-undef
      text = Buffer.from(b64, 'base64').toString('utf8');
    }
    const payload = JSON.parse(text);
    return payload && typeof payload === 'object' ? payload : null;
  } catch {
    return null;
  }
}

/**
 * Full-jitter backoff: a uniform random delay in [0, min(maxMs, initialMs * 2^attempt)).
 * `attempt` counts from 0.
 */
export function backoffDelay(attempt, { initialMs = 500, maxMs = 30000, factor = 2 } = {}, random = Math.random) {
  const ceiling = Math.min(maxMs, initialMs * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}

function defaultId(random) {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function' && random === Math.random) return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(random() * 16).toString(16);
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-${s.slice(16, 20)}-${s.slice(20, 32)}`;
}

function withToken(url, token) {
  if (!token) return url;
  const sep = url.includes('?') ? '&' : '?';
  return `${url}${sep}token=${encodeURIComponent(token)}`;
}

export class ParleyClient {
  /**
   * @param {object} options see parley-client.d.ts (ParleyClientOptions)
   */
  constructor(options = {}) {
    const {
      url,
      token = null,
      tokenProvider = null,
      reconnect = true,
      backoff = {},
      pingIntervalMs = 5 * 60 * 1000,
      maxQueue = 100,
      connectTimeoutMs = 15000,
      joinTimeoutMs = 10000,
      retryInitialConnect = false,
      maxReconnectAttempts = Infinity,
      WebSocketImpl = globalThis.WebSocket,
      timers = {},
      random = Math.random,
      now = () => Date.now(),
      generateId = null,
    } = options;
    if (!url) throw new ParleyError('invalid_options', 'ParleyClient: `url` is required');
    if (!WebSocketImpl) throw new ParleyError('invalid_options', 'ParleyClient: no WebSocket implementation (pass `WebSocketImpl`)');
    this.url = url;
    this.token = token;
    this.tokenProvider = tokenProvider;
    this.reconnectEnabled = reconnect !== false;
    this.backoff = { initialMs: 500, maxMs: 30000, factor: 2, ...backoff };
    this.pingIntervalMs = Math.max(1, Math.min(pingIntervalMs || MAX_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS));
    this.maxQueue = maxQueue;
    this.connectTimeoutMs = connectTimeoutMs;
    this.joinTimeoutMs = joinTimeoutMs;
    this.retryInitialConnect = retryInitialConnect;
    this.maxReconnectAttempts = maxReconnectAttempts;
    this._WS = WebSocketImpl;
    this._t = {
      setTimeout: timers.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms)),
      clearTimeout: timers.clearTimeout || ((id) => globalThis.clearTimeout(id)),
    };
    this._random = random;
    this._now = now;
    this._genId = generateId || (() => defaultId(this._random));

    this._listeners = new Map();
    this._ws = null;
    this._state = 'idle'; // idle | connecting | open | reconnecting | closed
    this._everOpened = false; // this connect() cycle has had an open socket
    this._attempt = 0; // reconnect attempts since the last open
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._connectTimer = null;
    this._connectWaiters = [];
    this._queue = []; // frames waiting for an open socket (or a room join)
    this._pending = new Map(); // clientMessageId -> frame, sent but not yet seen back
    this._rooms = new Map(); // roomId -> {lastMessageId, joined, joinTimer, limit}
    this._seen = new Map(); // roomId -> {set:Set, order:string[]}
    this._lastClose = null;
  }

  // ---- state -------------------------------------------------------------

  get state() {
    return this._state;
  }

  get isConnected() {
    return this._state === 'open';
  }

  /** Reconnect attempts since the socket was last open. */
  get reconnectAttempts() {
    return this._attempt;
  }

  /** Rooms this client is in (and rejoins after a reconnect). */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** The newest messageId seen in a room (the `since` of the next rejoin). */
  lastMessageId(roomId) {
    const r = this._rooms.get(roomId);
    return r ? r.lastMessageId : undefined;
  }

  /** Number of frames waiting to be sent. */
  get queuedCount() {
    return this._queue.length;
  }

  /** clientMessageIds of chat messages sent but not yet seen back. */
  get pendingClientMessageIds() {
    return [...this._pending.keys()];
  }

  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    this._emit('state', s);
  }

  // ---- events ------------------------------------------------------------

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return this;
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (!set) return this;
    if (fn === undefined) set.clear();
    else set.delete(fn);
    return this;
  }

  once(type, fn) {
    const wrap = (...args) => {
      this.off(type, wrap);
      fn(...args);
    };
    return this.on(type, wrap);
  }

  _emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A listener's bug must not break the connection loop.
        if (typeof console !== 'undefined') console.error(`parley: listener for "${type}" threw`, err);
      }
    }
  }

  // ---- connecting ---------------------------------------------------------

  /**
   * Open the connection. Resolves when the socket is open; rejects with a
   * ParleyConnectionError when the handshake is refused (or times out), and
   * then does not retry (unless `retryInitialConnect`).
   */
  connect() {
    if (this._state === 'open') return Promise.resolve();
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this._state === 'connecting' || this._state === 'reconnecting') return p;
    this._everOpened = false;
    this._attempt = 0;
    this._open(false);
    return p;
  }

  /** Close for good: no reconnect. Rooms and the pending queue are kept for a later connect(). */
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
    for (const r of this._rooms.values()) r.joined = false;
    if (wasOpen) this._emit('disconnect', { code, reason, wasClean: true, willReconnect: false });
  }

  /** Alias of close(), the seed guide's name. */
  disconnect() {
    this.close();
  }


  _tokenExpired() {
    const payload = decodeJwtPayload(this.token);
    if (!payload || typeof payload.exp !== 'number') return false;
    return payload.exp * 1000 <= this._now();
  }

  _open(isReconnect) {
    this._setState(isReconnect ? 'reconnecting' : 'connecting');
    if (!this.tokenProvider) {
      this._openWith(this.token);
      return;
    }
    const cycle = (this._cycle = (this._cycle || 0) + 1);
    const failed = (err) =>
      this._fail(err instanceof ParleyConnectionError ? err : new ParleyConnectionError('unauthorized', `tokenProvider failed: ${err && err.message}`, { cause: err }));
    let result;
    try {
      result = this.tokenProvider();
    } catch (err) {
      failed(err);
      return;
    }
    Promise.resolve(result).then(
      (t) => {
        if (this._state === 'closed' || cycle !== this._cycle) return; // close() while waiting
        if (!t) return failed(new ParleyConnectionError('unauthorized', 'tokenProvider returned no token'));
        this.token = t;
        this._openWith(t);
      },
      (err) => {
        if (this._state === 'closed' || cycle !== this._cycle) return;
        failed(err);
      },
    );
  }

  _openWith(token) {
    if (this._tokenExpired()) {
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
      this._onFrame(ev.data);
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
    this._setState('open');
    this._schedulePing();
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.resolve();
    this._emit('connect');
    // Rejoin every room, each with `since` = the newest messageId seen there.
    for (const [roomId, r] of this._rooms) this._sendJoin(roomId, r);
    // Chat messages sent earlier but never seen back go again, same clientMessageId.
    const resend = [...this._pending.values()].filter((f) => !this._queue.includes(f));
    this._queue = resend.concat(this._queue);
    this._flush();
  }

  _onClose(ev, opened) {
    this._t.clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._stopPing();
    for (const r of this._rooms.values()) {
      r.joined = false;
      this._t.clearTimeout(r.joinTimer);
      r.joinTimer = null;
    }
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
    if (this._tokenExpired()) {
      this._fail(new ParleyConnectionError('unauthorized', 'the token has expired; the server refuses it (401)', { closeCode: info.code }));
      return;
    }
    if (!this.reconnectEnabled) {
      this._fail(new ParleyConnectionError('refused', 'connection failed', { closeCode: info.code }));
      return;
    }
    this._scheduleReconnect();
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
    this._setState('closed');
    this._emit('connect_error', err);
    this._rejectWaiters(err);
  }

  _rejectWaiters(err) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  _scheduleReconnect() {
    if (this._attempt >= this.maxReconnectAttempts) {
      this._fail(new ParleyConnectionError('gave_up', `gave up after ${this._attempt} reconnect attempts`));
      return;
    }
    const delayMs = backoffDelay(this._attempt, this.backoff, this._random);
    this._attempt += 1;
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs, lastClose: this._lastClose });
    this._reconnectTimer = this._t.setTimeout(() => {
      this._reconnectTimer = null;
      this._open(true);
    }, delayMs);
  }

  _clearTimers() {
    this._t.clearTimeout(this._reconnectTimer);
    this._t.clearTimeout(this._connectTimer);
    this._reconnectTimer = this._connectTimer = null;
    this._stopPing();
    for (const r of this._rooms.values()) {
      this._t.clearTimeout(r.joinTimer);
      r.joinTimer = null;
    }
  }

  _schedulePing() {
    this._stopPing();
    this._pingTimer = this._t.setTimeout(() => {
      this._pingTimer = null;
      if (this._state !== 'open') return;
      this._write({ type: 'ping', data: {} });
      this._schedulePing();
    }, this.pingIntervalMs);
  }

  _stopPing() {
    this._t.clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }

  // ---- receiving ----------------------------------------------------------

  _onFrame(raw) {
    if (typeof raw !== 'string') return; // the protocol has text frames only
    this._emit('frame', { direction: 'in', raw });
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') return;
    const type = frame.type;
    const data = frame.data && typeof frame.data === 'object' ? frame.data : {};

    if (type === 'message_received') {
      if (this._markSeen(data)) return; // a duplicate: already delivered
    } else if (type === 'chat_history') {
      const room = this._rooms.get(data.roomId);
      if (Array.isArray(data.messages)) for (const m of data.messages) this._markSeen({ ...m, roomId: m.roomId || data.roomId });
      if (room && !room.joined) {
        room.joined = true;
        this._t.clearTimeout(room.joinTimer);
        room.joinTimer = null;
        this._flush();
      }
    } else if (type === 'error') {
      if (data.clientMessageId && this._pending.has(data.clientMessageId) && data.code !== 'rate_limited' && data.code !== 'internal_error') {
        // Refused for good (validation, not a member): do not retry it.
        this._pending.delete(data.clientMessageId);
      }
      if (data.code === 'rate_limited' && data.clientMessageId && this._pending.has(data.clientMessageId)) {
        // Try again (same clientMessageId) once the server says we may.
        const frame = this._pending.get(data.clientMessageId);
        const delay = typeof data.retryAfterMs === 'number' && data.retryAfterMs >= 0 ? data.retryAfterMs : 1000;
        this._t.setTimeout(() => {
          if (this._pending.get(data.clientMessageId) !== frame || this._queue.includes(frame)) return;
          if (this._canSendNow(frame)) this._write(frame);
          // Otherwise it is re-sent by the next reconnect.
        }, delay);
      }
    }
    this._emit(type, data, frame);
    this._emit('*', type, data, frame);
  }

  /** Record a message as seen. Returns true if it had been seen before. */
  _markSeen(m) {
    if (!m || typeof m.messageId !== 'string') return false;
    if (m.clientMessageId && this._pending.has(m.clientMessageId)) {
      this._pending.delete(m.clientMessageId);
      this._queue = this._queue.filter((f) => !(f.type === 'chat_message' && f.data.clientMessageId === m.clientMessageId));
    }
    const roomId = m.roomId;
    if (typeof roomId !== 'string') return false;
    let seen = this._seen.get(roomId);
    if (!seen) {
      seen = { set: new Set(), order: [] };
      this._seen.set(roomId, seen);
    }
    if (seen.set.has(m.messageId)) return true;
    seen.set.add(m.messageId);
    seen.order.push(m.messageId);
    if (seen.order.length > SEEN_PER_ROOM) seen.set.delete(seen.order.shift());
    const room = this._rooms.get(roomId);
    // ULIDs sort by time: keep the greatest as the rejoin `since`.
    if (room && (!room.lastMessageId || m.messageId > room.lastMessageId)) room.lastMessageId = m.messageId;
    return false;
  }

  // ---- sending ------------------------------------------------------------

  _write(frame) {
    const raw = JSON.stringify(frame);
    this._ws.send(raw);
    this._emit('frame', { direction: 'out', raw });
  }

  _canSendNow(frame) {
    if (this._state !== 'open' || !this._ws) return false;
    if (typeof this._ws.readyState === 'number' && this._ws.readyState !== 1) return false; // closing: queue it
    const roomId = frame.data && frame.data.roomId;
    if (frame.type === 'join_room' || frame.type === 'leave_room' || frame.type === 'ping' || frame.type === 'message') return true;
    // Members-only frames for a room being (re)joined wait for its chat_history.
    const room = roomId !== undefined ? this._rooms.get(roomId) : undefined;
    return !room || room.joined;
  }

  _flush() {
    if (this._state !== 'open') return;
    const keep = [];
    for (const f of this._queue) {
      if (this._canSendNow(f)) this._write(f);
      else keep.push(f);
    }
    this._queue = keep;
  }

  _enqueue(frame) {
    if (this._queue.length >= this.maxQueue) {
      this._emit('queue_overflow', frame);
      throw new ParleyError('queue_full', `the send queue is full (${this.maxQueue} frames); not sent: ${frame.type}`, { frame });
    }
    this._queue.push(frame);
  }

  /**
   * Send a frame `{type, data}`. `join_room`/`leave_room` go through
   * joinRoom/leaveRoom (so the room is rejoined after a reconnect);
   * `chat_message` gets a clientMessageId if it has none, and that id is
   * returned.
   */
  send(type, data = {}) {
    if (typeof type !== 'string' || !type) throw new ParleyError('invalid_frame', 'send: `type` must be a non-empty string');
    data = data && typeof data === 'object' ? data : {};
    if (type === 'join_room') return this.joinRoom(data.roomId, data);
    if (type === 'leave_room') return this.leaveRoom(data.roomId);
    const frame = { type, data: { ...data } };
    if (type === 'chat_message') {
      if (!frame.data.clientMessageId) frame.data.clientMessageId = this._genId();
      const id = frame.data.clientMessageId;
      if (!this._pending.has(id) && this._pending.size >= this.maxQueue) {
        this._emit('queue_overflow', frame);
        throw new ParleyError('queue_full', `${this._pending.size} chat messages are still unacknowledged; not sent`, { frame });
      }
      if (this._canSendNow(frame)) this._write(frame);
      else this._enqueue(frame);
      this._pending.set(id, frame);
      return id;
    }
    if (this._canSendNow(frame)) this._write(frame);
    else if (!NOT_QUEUED.has(type)) this._enqueue(frame);
    return undefined;
  }

  /** The seed guide's `sendMessage({type, data})`. */
  sendMessage(message) {
    if (!message || typeof message !== 'object') throw new ParleyError('invalid_frame', 'sendMessage expects {type, data}');
    return this.send(message.type, message.data || {});
  }

  /** Send a raw text frame as is (debugging; only while open). Returns false when not open. */
  sendRaw(text) {
    if (this._state !== 'open' || !this._ws) return false;
    this._ws.send(text);
    this._emit('frame', { direction: 'out', raw: text });
    return true;
  }

  _sendJoin(roomId, room) {
    const data = { roomId };
    if (room.lastMessageId) data.since = room.lastMessageId;
    if (room.limit) data.limit = room.limit;
    room.joined = false;
    this._t.clearTimeout(room.joinTimer);
    // If no chat_history comes back in time, stop holding the room's frames.
    room.joinTimer = this._t.setTimeout(() => {
      room.joinTimer = null;
      if (this._rooms.get(roomId) === room && !room.joined) {
        room.joined = true;
        this._flush();
      }
    }, this.joinTimeoutMs);
    this._write({ type: 'join_room', data });
  }

  /** Join a room (and rejoin it after every reconnect). `since`/`limit` as in PROTOCOL.md. */
  joinRoom(roomId, { since, limit } = {}) {
    if (typeof roomId !== 'string' || !ROOM_ID_RE.test(roomId)) throw new ParleyError('invalid_room', `invalid roomId: ${roomId}`);
    let room = this._rooms.get(roomId);
    if (!room) {
      room = { lastMessageId: since, joined: false, joinTimer: null, limit };
      this._rooms.set(roomId, room);
    } else {
      if (since && (!room.lastMessageId || since > room.lastMessageId)) room.lastMessageId = since;
      if (limit) room.limit = limit;
    }
    if (this._state === 'open' && this._ws) this._sendJoin(roomId, room);
  }

  /** Leave a room; it is no longer rejoined. Its queued frames are dropped. */
  leaveRoom(roomId) {
    const room = this._rooms.get(roomId);
    if (room) {
      this._t.clearTimeout(room.joinTimer);
      this._rooms.delete(roomId);
    }
    this._seen.delete(roomId);
    this._queue = this._queue.filter((f) => !(f.data && f.data.roomId === roomId));
    for (const [id, f] of this._pending) if (f.data.roomId === roomId) this._pending.delete(id);
    if (this._state === 'open' && this._ws) this._write({ type: 'leave_room', data: { roomId } });
  }

  /** Send a chat message; returns the clientMessageId (retries reuse it). */
  sendChatMessage(roomId, text, { clientMessageId } = {}) {
    const data = { roomId, message: text };
    if (clientMessageId) data.clientMessageId = clientMessageId;
    return this.send('chat_message', data);
  }

  setTyping(roomId, isTyping) {
    this.send('typing', { roomId, isTyping: !!isTyping });
  }

  markRead(roomId, messageId) {
    this.send('mark_read', { roomId, messageId });
  }

  getHistory(roomId, before, { limit } = {}) {
    const data = { roomId };
    if (before) data.before = before;
    if (limit) data.limit = limit;
    this.send('get_history', data);
  }

  /** The `message` echo route: answered with `message_response`. */
  sendEcho(message) {
    this.send('message', { message });
  }

  ping() {
    this.send('ping', {});
  }
}

export default ParleyClient;
