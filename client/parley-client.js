// parley-client.js: the Parley browser client (protocol version 1).
//
// A dependency-free ES module on top of the platform `WebSocket`. It speaks
// the wire contract in docs/PROTOCOL.md: one JSON text frame `{type, data}`
// each way. This file is the public face; the work is done by small modules
// in ./lib/:
//   connection.js  the socket's state machine: tokens, backoff, ping, refusals
//   rooms.js       rooms to rejoin (with `since`) and message ids already seen
//   outbox.js      queued frames and chat messages not yet seen back
//   participants.js each joined room's participants and count, paged and kept up
//   messages.js    one room's messages, each at its newest version (RoomMessages, exported)
//   emitter.js     events, with listeners isolated from the loop
// Give a `tokenProvider` (async () => token) to fetch a fresh token before
// every attempt; `retryInitialConnect: true` opts into retrying the first
// connection too (e.g. an app that starts before the network is up).

import { Connection } from './lib/connection.js';
import { Emitter } from './lib/emitter.js';
import { ParleyError } from './lib/errors.js';
import { checkFrameSize } from './lib/frames.js';
import { randomId } from './lib/ids.js';
import { Outbox } from './lib/outbox.js';
import { ParticipantTracker } from './lib/participants.js';
import { RoomTracker, checkJoin } from './lib/rooms.js';
import { decodeJwtPayload } from './lib/token.js';

export { PROTOCOL_VERSION, SERVER_TYPES, CLIENT_TYPES, CLIENT_EVENTS, ROOM_ID_RE, MAX_CLIENT_FRAME_BYTES, dmRoomId } from './lib/protocol.js';
export { ParleyError, ParleyConnectionError } from './lib/errors.js';
export { decodeJwtPayload } from './lib/token.js';
export { RoomMessages, versionOf } from './lib/messages.js';
export { backoffDelay } from './lib/backoff.js';

// Frames that do not wait for a room's rejoin to be answered.
const ROOMLESS = new Set(['join_room', 'leave_room', 'ping', 'message', 'get_rooms']);

export class ParleyClient {
  /**
   * @param {object} options see parley-client.d.ts (ParleyClientOptions)
   */
  constructor(options = {}) {
    const { url, maxQueue = 100, joinTimeoutMs = 10000, rejoinOverlapMs = 30000, ackTimeoutMs = 30000, WebSocketImpl = globalThis.WebSocket, timers = {}, random = Math.random, generateId = null } = options;
    if (!url) throw new ParleyError('invalid_options', 'ParleyClient: `url` is required');
    if (!WebSocketImpl) throw new ParleyError('invalid_options', 'ParleyClient: no WebSocket implementation (pass `WebSocketImpl`)');
    if (!Number.isInteger(rejoinOverlapMs) || rejoinOverlapMs < 0) {
      throw new ParleyError('invalid_options', `ParleyClient: \`rejoinOverlapMs\` must be a whole number of milliseconds >= 0, got ${rejoinOverlapMs}`);
    }
    this._t = {
      setTimeout: timers.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms)),
      clearTimeout: timers.clearTimeout || ((id) => globalThis.clearTimeout(id)),
    };
    this._genId = generateId || (() => randomId(random));
    this._events = new Emitter();
    const emit = (type, ...args) => this._events.emit(type, ...args);
    const write = (frame) => this._write(frame);
    this._conn = new Connection(
      { ...options, WebSocketImpl, timers: this._t },
      {
        emit,
        opened: () => this._onOpen(),
        frame: (raw) => this._onFrame(raw),
        down: () => {
          this._rooms.reset();
          this._outbox.reset();
          this._participants.reset();
        },
        ping: () => write({ type: 'ping', data: {} }),
      },
    );
    this._rooms = new RoomTracker({ joinTimeoutMs, rejoinOverlapMs, timers: this._t, write, ready: () => this._flush() });
    this._participants = new ParticipantTracker({
      timers: this._t,
      pageTimeoutMs: ackTimeoutMs, // beyond API Gateway's 29 s integration timeout: an answer can still come until then
      write,
      emit,
      isOpen: () => this._conn.writable,
      canSend: (frame) => this._conn.writable && this._rooms.isReady(frame.data.roomId),
    });
    this._outbox = new Outbox({
      maxQueue,
      ackTimeoutMs,
      timers: this._t,
      emit,
      write,
      canSend: (frame) => this._conn.writable && (ROOMLESS.has(frame.type) || this._rooms.isReady(frame.data && frame.data.roomId)),
    });
  }

  // ---- state -------------------------------------------------------------

  get url() {
    return this._conn.url;
  }

  /** The token of the next attempt (a tokenProvider replaces it before each one). */
  get token() {
    return this._conn.token;
  }

  set token(t) {
    this._conn.token = t;
  }

  get state() {
    return this._conn.state;
  }

  /** The user id (`sub`) of the current token, or null when there is none (read, not verified: for display only). */
  get userId() {
    const claims = decodeJwtPayload(this.token);
    return claims && typeof claims.sub === 'string' ? claims.sub : null;
  }

  get isConnected() {
    return this._conn.state === 'open';
  }

  /** Reconnect attempts since the socket was last open. */
  get reconnectAttempts() {
    return this._conn.attempt;
  }

  /** The ParleyConnectionError that stopped the client (state `closed`); null once a socket opens again. */
  get lastError() {
    return this._conn.lastError;
  }

  /** Rooms this client is in (and rejoins after a reconnect). */
  get rooms() {
    return this._rooms.ids;
  }

  /** The newest messageId seen in a room (the `since` of the next rejoin). */
  lastMessageId(roomId) {
    return this._rooms.lastMessageId(roomId);
  }

  /**
   * The participants of a joined room as this client knows them: {roomId, participants (userId
   * order), count (the room's size, from the server), hasMore, loading}. The same object until
   * it changes (the `participants` event). Empty for a room this client is not in.
   */
  participants(roomId) {
    return this._participants.snapshot(roomId);
  }

  /** Number of frames waiting to be sent. */
  get queuedCount() {
    return this._outbox.queuedCount;
  }

  /** clientMessageIds of chat messages sent but not yet seen back. */
  get pendingClientMessageIds() {
    return this._outbox.pendingIds;
  }

  // ---- events ------------------------------------------------------------

  on(type, fn) {
    this._events.on(type, fn);
    return this;
  }

  off(type, fn) {
    this._events.off(type, fn);
    return this;
  }

  once(type, fn) {
    this._events.once(type, fn);
    return this;
  }

  // ---- connecting ---------------------------------------------------------

  /**
   * Open the connection. Resolves when the socket is open; rejects with a
   * ParleyConnectionError when the handshake is refused (or times out), and
   * then does not retry (unless `retryInitialConnect`).
   */
  connect() {
    return this._conn.connect();
  }

  /** Close for good: no reconnect. Rooms and the pending queue are kept for a later connect(). */
  close(code = 1000, reason = 'client closed') {
    this._conn.close(code, reason);
  }

  /** Alias of close(), the seed guide's name. */
  disconnect() {
    this.close();
  }

  _onOpen() {
    this._rooms.rejoinAll();
    this._outbox.requeuePending();
    this._flush();
  }

  _flush() {
    if (this._conn.state !== 'open') return;
    this._outbox.flush();
    this._participants.pump();
  }

  // ---- receiving ----------------------------------------------------------

  _onFrame(raw) {
    if (typeof raw !== 'string') return; // the protocol has text frames only
    this._events.emit('frame', { direction: 'in', raw });
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
      if (this._received(data)) return; // a duplicate: already delivered
    } else if (type === 'chat_history') {
      if (Array.isArray(data.messages)) for (const m of data.messages) if (m && typeof m === 'object') this._received({ ...m, roomId: m.roomId || data.roomId });
      this._rooms.historyArrived(data.roomId, data);
    } else if (type === 'chat_update') {
      this._outbox.delivered(data);
    } else if (type === 'error') {
      this._outbox.refused(data);
      this._participants.error(data);
      this._rooms.error(data);
    } else if (type === 'participants_list') {
      this._participants.participantsList(data);
    } else if (type === 'user_joined') {
      this._participants.userJoined(data);
    } else if (type === 'user_left') {
      this._participants.userLeft(data);
    } else if (type === 'presence_update') {
      this._participants.presenceUpdate(data);
    }
    this._events.emit(type, data, frame);
    this._events.emit('*', type, data, frame);
  }

  /** A message arrived: acknowledge it if it is ours; returns true if it had been seen before. */
  _received(m) {
    if (!m || typeof m.messageId !== 'string') return false;
    this._outbox.acknowledge(m);
    return this._rooms.markSeen(m);
  }

  // ---- sending ------------------------------------------------------------

  _write(frame) {
    if (frame.type === 'join_room') this._participants.joinSent(frame.data.roomId);
    const raw = JSON.stringify(frame);
    this._conn.send(raw);
    this._events.emit('frame', { direction: 'out', raw });
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
    if (type === 'get_participants' && this._rooms.ids.includes(data.roomId)) {
      // Tracked, so its answer lands in participants(roomId): a page with a cursor is added, one without replaces.
      return this._participants.request(data.roomId, { cursor: data.cursor, limit: data.limit });
    }
    const frame = { type, data: { ...data } };
    if (type === 'chat_message' && !frame.data.clientMessageId) frame.data.clientMessageId = this._genId();
    checkFrameSize(JSON.stringify(frame), type);
    if (type === 'chat_message') {
      return this._outbox.submitChat(frame);
    }
    this._outbox.submit(frame);
    return undefined;
  }

  /** The seed guide's `sendMessage({type, data})`. */
  sendMessage(message) {
    if (!message || typeof message !== 'object') throw new ParleyError('invalid_frame', 'sendMessage expects {type, data}');
    return this.send(message.type, message.data || {});
  }

  /** Send a raw text frame as is (debugging; only while open). Returns false when not open. */
  sendRaw(text) {
    checkFrameSize(text, 'raw');
    if (!this._conn.isOpen) return false;
    this._conn.send(text);
    this._events.emit('frame', { direction: 'out', raw: text });
    return true;
  }

  /** Join a room (and rejoin it after every reconnect). `since`/`limit` as in PROTOCOL.md. */
  joinRoom(roomId, { since, limit } = {}) {
    checkJoin(roomId, since); // before anything is kept of the room
    this._participants.track(roomId);
    this._rooms.join(roomId, { since, limit }, this._conn.isOpen);
  }

  /**
   * Leave a room; it is no longer rejoined. Its queued frames are dropped. A room whose join is still
   * queued was never joined on this socket: no leave_room, which would spend the joins allowance.
   */
  leaveRoom(roomId) {
    const queued = this._rooms.leave(roomId);
    this._outbox.dropRoom(roomId);
    this._participants.forget(roomId);
    if (this._conn.isOpen && !queued) this._write({ type: 'leave_room', data: { roomId } });
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

  /** Edit one's own message: every member gets `message_updated`. */
  editMessage(roomId, messageId, text) {
    this.send('edit_message', { roomId, messageId, message: text });
  }

  /** Delete a message (one's own, or anyone's with `moderate`): every member gets `message_deleted`. */
  deleteMessage(roomId, messageId) {
    this.send('delete_message', { roomId, messageId });
  }

  /** Add (or with `{remove: true}` remove) one emoji reaction: every member gets `reaction_update`. */
  react(roomId, messageId, emoji, { remove = false } = {}) {
    const data = { roomId, messageId, emoji };
    if (remove) data.remove = true;
    this.send('react', data);
  }

  /** Ask for the user's rooms, newest activity first: answered with `rooms_list` (pass its `nextCursor` for more). */
  getRooms({ limit, cursor } = {}) {
    const data = {};
    if (limit) data.limit = limit;
    if (cursor) data.cursor = cursor;
    this.send('get_rooms', data);
  }

  /**
   * Ask for the room's next page of participants (`get_participants` with the last `nextCursor`);
   * the answer lands in participants(roomId) and fires `participants`. Throws ParleyError
   * `no_more_participants` (hasMore is false), `participants_loading` (a page is on its way),
   * `not_joined` (joinRoom first) or `not_ready` (the socket is down; the rejoin brings a first page).
   * While the room's join is being answered the page waits for it.
   */
  loadMoreParticipants(roomId, { limit } = {}) {
    this._participants.loadMore(roomId, { limit });
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
