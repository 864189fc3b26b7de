// outbox.js: frames waiting to go, and chat messages not yet seen back.
//
// A frame that cannot go now (no open socket, or its room is being
// rejoined) waits in a bounded queue. A `chat_message` also stays "pending"
// until the server's `message_received` (or the rejoin history) shows it
// stored; after a reconnect every pending message goes again with its
// original clientMessageId, which the server uses to store it once.
//
// Per-sender order: at most one chat_message per room is in flight. The
// next one goes when the server has answered the previous: its
// `chat_update` (sent after the fan-out), an `error` that refuses it, or,
// for a re-sent message (which the server may answer with the stored
// original only), its `message_received`. The server numbers messages in
// the order its parallel invocations finish, so without this a burst
// arrives shuffled (docs/PROTOCOL.md, "Order").

import { ParleyError } from './errors.js';

// Frames never queued while disconnected: rooms are rejoined from the
// client's own room set, typing is ephemeral, pings are pointless.
const NOT_QUEUED = new Set(['join_room', 'leave_room', 'typing', 'ping']);
// An internal_error is retried (same clientMessageId) this many times before the room moves on.
const INTERNAL_ERROR_RETRIES = 2;

export class Outbox {
  /**
   * @param {object} deps {maxQueue, ackTimeoutMs, timers, canSend(frame), write(frame), emit(type, ...args)}:
   *   `canSend` says whether the socket and the frame's room accept it now; the outbox adds the
   *   one-in-flight rule for chat messages.
   */
  constructor({ maxQueue, ackTimeoutMs = 30000, timers, canSend, write, emit }) {
    this.maxQueue = maxQueue;
    this.ackTimeoutMs = ackTimeoutMs;
    this._t = timers;
    this._canSend = canSend;
    this._write = write;
    this._emit = emit;
    this._queue = []; // frames waiting for an open socket, a room join, or the room's previous chat message
    this._pending = new Map(); // clientMessageId -> frame, sent (or queued) but not yet seen back
    this._written = new Set(); // clientMessageIds written at least once (a re-send may be answered without chat_update)
    this._inFlight = new Map(); // roomId -> {frame, id, messageId, resent, errors, timer}
  }

  get queuedCount() {
    return this._queue.length;
  }

  get pendingIds() {
    return [...this._pending.keys()];
  }

  /** Send a non-chat frame now, or queue it (unless it is not worth queueing). */
  submit(frame) {
    if (this._canSend(frame)) this._write(frame);
    else if (!NOT_QUEUED.has(frame.type)) this._enqueue(frame);
  }

  /** Send a chat_message now if its room has none in flight, else queue it; either way it is pending until seen back. */
  submitChat(frame) {
    const id = frame.data.clientMessageId;
    if (!this._pending.has(id) && this._pending.size >= this.maxQueue) {
      this._emit('queue_overflow', frame);
      throw new ParleyError('queue_full', `${this._pending.size} chat messages are still unacknowledged; not sent`, { frame });
    }
    if (this._mayGo(frame)) this._sendChat(frame);
    else this._enqueue(frame);
    this._pending.set(id, frame);
    return id;
  }

  /** Send every queued frame that may go now, in order; keep the rest. */
  flush() {
    const keep = [];
    for (const f of this._queue) {
      if (!this._mayGo(f)) keep.push(f);
      else if (f.type === 'chat_message') this._sendChat(f);
      else this._write(f);
    }
    this._queue = keep;
  }

  /** On a new socket: chat messages sent earlier but never seen back go again, first, with the same clientMessageId. */
  requeuePending() {
    const resend = [...this._pending.values()].filter((f) => !this._queue.includes(f));
    this._queue = resend.concat(this._queue);
  }

  /** The socket is gone: nothing is in flight any more (pending messages are re-sent on the next one). */
  reset() {
    for (const entry of this._inFlight.values()) this._t.clearTimeout(entry.timer);
    this._inFlight.clear();
  }

  /** A message came back (`message_received`, or in a `chat_history`): if it is ours, it is stored; never send it again. */
  acknowledge(m) {
    const id = m.clientMessageId;
    if (!id || !this._pending.has(id)) return;
    this._pending.delete(id);
    this._written.delete(id);
    this._queue = this._queue.filter((f) => !(f.type === 'chat_message' && f.data.clientMessageId === id));
    const entry = this._inFlightById(id);
    if (!entry) return;
    if (entry.resent) this._release(entry);
    else entry.messageId = m.messageId; // its chat_update follows the fan-out
  }

  /** A `chat_update`: the room's message in flight has been fanned out, so the next may go. */
  delivered(update) {
    if (update.status !== 'delivered' && update.status !== 'sent') return; // 'sent': a large room's sharded fan-out
    const entry = this._inFlight.get(update.roomId);
    if (entry && entry.messageId !== undefined && entry.messageId === update.messageId) this._release(entry);
  }

  /** An `error` about one of our chat messages: drop it if refused for good, else send it again when allowed. */
  refused(data) {
    const id = data.clientMessageId;
    if (!id || !this._pending.has(id)) return;
    const entry = this._inFlightById(id);
    const retryable = data.code === 'rate_limited' || (data.code === 'internal_error' && (!entry || entry.errors < INTERNAL_ERROR_RETRIES));
    if (!retryable) {
      if (data.code !== 'internal_error') {
        // Refused for good (validation, not a member): do not retry it.
        this._pending.delete(id);
        this._written.delete(id);
      } // else: still pending; the next reconnect sends it again.
      if (entry) this._release(entry);
      return;
    }
    const frame = this._pending.get(id);
    let delay;
    if (data.code === 'rate_limited') delay = typeof data.retryAfterMs === 'number' && data.retryAfterMs >= 0 ? data.retryAfterMs : 1000;
    else delay = 1000 * (entry ? ++entry.errors : 1);
    if (entry) this._t.clearTimeout(entry.timer);
    this._t.setTimeout(() => {
      if (this._pending.get(id) !== frame || this._queue.includes(frame)) return;
      if (entry) {
        if (this._inFlight.get(entry.roomId) !== entry) return; // the socket closed: re-sent on the next one
        if (this._canSend(frame)) this._sendChat(frame, entry);
      } else if (this._canSend(frame)) this._write(frame);
      // Otherwise it is re-sent by the next reconnect.
    }, delay);
  }

  /** Leaving a room: its queued frames and pending messages are dropped. */
  dropRoom(roomId) {
    this._queue = this._queue.filter((f) => !(f.data && f.data.roomId === roomId));
    for (const [id, f] of this._pending) {
      if (f.data.roomId !== roomId) continue;
      this._pending.delete(id);
      this._written.delete(id);
    }
    const entry = this._inFlight.get(roomId);
    if (entry) {
      this._t.clearTimeout(entry.timer);
      this._inFlight.delete(roomId);
    }
  }

  _mayGo(frame) {
    if (!this._canSend(frame)) return false;
    return frame.type !== 'chat_message' || !this._inFlight.has(frame.data.roomId);
  }

  /** Write a chat message and hold its room until the server answers it (or ackTimeoutMs passes). */
  _sendChat(frame, entry = null) {
    const id = frame.data.clientMessageId;
    const roomId = frame.data.roomId;
    const resent = this._written.has(id);
    if (!entry) {
      entry = { frame, id, roomId, messageId: undefined, resent, errors: 0, timer: null };
      this._inFlight.set(roomId, entry);
    }
    entry.resent = resent;
    this._written.add(id);
    this._t.clearTimeout(entry.timer);
    // No answer at all (a lost frame, a server that never replies): stop holding the room.
    entry.timer = this._t.setTimeout(() => this._release(entry), this.ackTimeoutMs);
    this._write(frame);
  }

  _inFlightById(id) {
    for (const entry of this._inFlight.values()) if (entry.id === id) return entry;
    return undefined;
  }

  _release(entry) {
    if (this._inFlight.get(entry.roomId) !== entry) return;
    this._t.clearTimeout(entry.timer);
    this._inFlight.delete(entry.roomId);
    this.flush();
  }

  _enqueue(frame) {
    if (this._queue.length >= this.maxQueue) {
      this._emit('queue_overflow', frame);
      throw new ParleyError('queue_full', `the send queue is full (${this.maxQueue} frames); not sent: ${frame.type}`, { frame });
    }
    this._queue.push(frame);
  }
}
