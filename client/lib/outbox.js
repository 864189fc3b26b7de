// outbox.js: frames waiting to go, and chat messages not yet seen back.
//
// A frame that cannot go now (no open socket, or its room is being
// rejoined) waits in a bounded queue. A `chat_message` also stays "pending"
// until the server's `message_received` (or the rejoin history) shows it
// stored; after a reconnect every pending message goes again with its
// original clientMessageId, which the server uses to store it once.

import { ParleyError } from './errors.js';

// Frames never queued while disconnected: rooms are rejoined from the
// client's own room set, typing is ephemeral, pings are pointless.
const NOT_QUEUED = new Set(['join_room', 'leave_room', 'typing', 'ping']);
// Error codes after which the same chat_message may succeed if sent again.
const RETRYABLE = new Set(['rate_limited', 'internal_error']);

export class Outbox {
  /**
   * @param {object} deps {maxQueue, timers, canSend(frame), write(frame), emit(type, ...args)}
   */
  constructor({ maxQueue, timers, canSend, write, emit }) {
    this.maxQueue = maxQueue;
    this._t = timers;
    this._canSend = canSend;
    this._write = write;
    this._emit = emit;
    this._queue = []; // frames waiting for an open socket (or a room join)
    this._pending = new Map(); // clientMessageId -> frame, sent but not yet seen back
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

  /** Send a chat_message now or queue it; either way it is pending until seen back. */
  submitChat(frame) {
    const id = frame.data.clientMessageId;
    if (!this._pending.has(id) && this._pending.size >= this.maxQueue) {
      this._emit('queue_overflow', frame);
      throw new ParleyError('queue_full', `${this._pending.size} chat messages are still unacknowledged; not sent`, { frame });
    }
    if (this._canSend(frame)) this._write(frame);
    else this._enqueue(frame);
    this._pending.set(id, frame);
    return id;
  }

  /** Send every queued frame that may go now, in order; keep the rest. */
  flush() {
    const keep = [];
    for (const f of this._queue) {
      if (this._canSend(f)) this._write(f);
      else keep.push(f);
    }
    this._queue = keep;
  }

  /** On a new socket: chat messages sent earlier but never seen back go again, first, with the same clientMessageId. */
  requeuePending() {
    const resend = [...this._pending.values()].filter((f) => !this._queue.includes(f));
    this._queue = resend.concat(this._queue);
  }

  /** The server stored this chat message: never send it again. */
  acknowledge(clientMessageId) {
    if (!clientMessageId || !this._pending.has(clientMessageId)) return;
    this._pending.delete(clientMessageId);
    this._queue = this._queue.filter((f) => !(f.type === 'chat_message' && f.data.clientMessageId === clientMessageId));
  }

  /** An `error` frame: drop a chat message refused for good; re-send a rate-limited one when allowed. */
  refused(data) {
    const id = data.clientMessageId;
    if (!id || !this._pending.has(id)) return;
    if (!RETRYABLE.has(data.code)) {
      // Refused for good (validation, not a member): do not retry it.
      this._pending.delete(id);
      return;
    }
    if (data.code !== 'rate_limited') return; // internal_error: re-sent by the next reconnect
    const frame = this._pending.get(id);
    const delay = typeof data.retryAfterMs === 'number' && data.retryAfterMs >= 0 ? data.retryAfterMs : 1000;
    this._t.setTimeout(() => {
      if (this._pending.get(id) !== frame || this._queue.includes(frame)) return;
      if (this._canSend(frame)) this._write(frame);
      // Otherwise it is re-sent by the next reconnect.
    }, delay);
  }

  /** Leaving a room: its queued frames and pending messages are dropped. */
  dropRoom(roomId) {
    this._queue = this._queue.filter((f) => !(f.data && f.data.roomId === roomId));
    for (const [id, f] of this._pending) if (f.data.roomId === roomId) this._pending.delete(id);
  }

  _enqueue(frame) {
    if (this._queue.length >= this.maxQueue) {
      this._emit('queue_overflow', frame);
      throw new ParleyError('queue_full', `the send queue is full (${this.maxQueue} frames); not sent: ${frame.type}`, { frame });
    }
    this._queue.push(frame);
  }
}
