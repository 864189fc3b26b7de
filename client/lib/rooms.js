// rooms.js: the rooms this client is in, and what it has seen in each.
//
// After a reconnect every room is rejoined with `since` a little before the
// newest messageId seen there (`rejoinOverlapMs`): messages from different
// senders are stored slightly out of messageId order (each handler takes its
// id before it writes), so one older than the newest seen may still have been
// on its way when the socket went down. A `since` page with `hasMore` is
// followed by the next (`get_history` with `since` = its newest), until the
// room is caught up.
// Frames for a room wait until its first `chat_history` (the rejoin's answer)
// arrives, so a member-only frame never reaches the server before the join.
// A join refused for a reason that passes (`rate_limited`: the server limits
// joins per user, and a reconnect from several tabs rejoins many rooms at
// once; `internal_error`) is sent again after the error's `retryAfterMs`, a
// few times at most, and the room's frames keep waiting for it meanwhile.
// Message ids already seen are remembered (bounded) to drop the duplicates
// the overlap, a rejoin or a server retry can bring.

import { ParleyError } from './errors.js';
import { ROOM_ID_RE } from './protocol.js';
import { rewindMessageId } from './ids.js';

const SEEN_PER_ROOM = 2000;
// The largest page the server allows: a long absence takes few requests.
const CATCH_UP_PAGE = 100;
// A join or catch-up page refused for a reason that may pass is asked again after this (or the
// error's retryAfterMs), at most this many times in a row.
const CATCH_UP_RETRY_MS = 1000;
const CATCH_UP_RETRIES = 5;
const RETRYABLE = new Set(['internal_error', 'rate_limited']);

export class RoomTracker {
  /**
   * @param {object} deps {joinTimeoutMs, rejoinOverlapMs, timers, write(frame), ready()}: `ready` is
   *   called when a room stops holding its frames (its history arrived or the join timed out).
   */
  constructor({ joinTimeoutMs, rejoinOverlapMs = 0, timers, write, ready }) {
    this.joinTimeoutMs = joinTimeoutMs;
    this.rejoinOverlapMs = rejoinOverlapMs;
    this._t = timers;
    this._write = write;
    this._ready = ready;
    // roomId -> {lastMessageId, joined, joinTimer, limit, joinFrame (the join awaiting its answer), catchUpFrame (the
    // page awaited), resumeFrom, catchUpRetries, catchUpRetry}
    this._rooms = new Map();
    this._seen = new Map(); // roomId -> {set:Set, order:string[]}
  }

  get ids() {
    return [...this._rooms.keys()];
  }

  lastMessageId(roomId) {
    const r = this._rooms.get(roomId);
    return r ? r.lastMessageId : undefined;
  }

  /** True when frames for this room may go now (not a room of ours, or its join has been answered). */
  isReady(roomId) {
    const room = roomId !== undefined ? this._rooms.get(roomId) : undefined;
    return !room || room.joined;
  }

  /** Register a room (kept for every rejoin) and, when `connected`, send its join now. */
  join(roomId, { since, limit } = {}, connected) {
    if (typeof roomId !== 'string' || !ROOM_ID_RE.test(roomId)) throw new ParleyError('invalid_room', `invalid roomId: ${roomId}`);
    let room = this._rooms.get(roomId);
    if (!room) {
      room = { lastMessageId: since, joined: false, joinTimer: null, limit, joinFrame: null, catchUpFrame: null, resumeFrom: null,
        catchUpRetries: 0, catchUpRetry: null };
      this._rooms.set(roomId, room);
    } else {
      if (since && (!room.lastMessageId || since > room.lastMessageId)) room.lastMessageId = since;
      if (limit) room.limit = limit;
    }
    if (connected) this._sendJoin(roomId, room);
  }

  /** Forget a room: it is no longer rejoined and its seen ids are dropped. */
  leave(roomId) {
    const room = this._rooms.get(roomId);
    if (room) {
      this._t.clearTimeout(room.joinTimer);
      this._t.clearTimeout(room.catchUpRetry);
      this._rooms.delete(roomId);
    }
    this._seen.delete(roomId);
  }

  /** On a new socket: join every room, each with `since` = the newest messageId seen there. */
  rejoinAll() {
    for (const [roomId, r] of this._rooms) this._sendJoin(roomId, r);
  }

  /**
   * The socket is gone: every room must be joined again before its frames go. A room whose catch-up
   * was under way keeps where it had got to (`resumeFrom`): its rejoin asks from there, not from the
   * newest message seen, which live messages may have moved past pages not fetched yet.
   */
  reset() {
    for (const r of this._rooms.values()) {
      r.joined = false;
      this._t.clearTimeout(r.joinTimer);
      r.joinTimer = null;
      this._t.clearTimeout(r.catchUpRetry);
      r.catchUpRetry = null;
      r.catchUpRetries = 0;
      r.catchUpFrame = null;
      r.joinFrame = null;
    }
  }

  /**
   * An `error` frame. One answering a join or a catch-up page for a reason that may pass
   * (`internal_error`, `rate_limited`) does not say which room it was: every join (or, for
   * `get_history`, every catch-up page) still unanswered is sent again after the pause, a few times
   * at most; one answered meanwhile is not. A join's room keeps holding its frames until the retry
   * has had `joinTimeoutMs` to be answered, so a queued message does not reach the room before its
   * join. A page answered twice is taken once (the second answer's `since` is no longer the one
   * awaited); a room joined twice is harmless.
   */
  error({ requestType, code, retryAfterMs } = {}) {
    if ((requestType !== 'get_history' && requestType !== 'join_room') || !RETRYABLE.has(code)) return;
    const delay = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : CATCH_UP_RETRY_MS;
    for (const [roomId, room] of this._rooms) {
      const frame = this._awaited(room);
      if (!frame || frame.type !== requestType || room.catchUpRetry || room.catchUpRetries >= CATCH_UP_RETRIES) continue;
      room.catchUpRetries += 1;
      if (frame.type === 'join_room' && !room.joined) this._hold(roomId, room, delay + this.joinTimeoutMs);
      room.catchUpRetry = this._t.setTimeout(() => {
        room.catchUpRetry = null;
        if (this._rooms.get(roomId) === room && this._awaited(room) === frame) this._write(frame);
      }, delay);
    }
  }

  /** The frame of the room still waiting for its answer: its join, else its catch-up page. */
  _awaited(room) {
    return room.joinFrame || room.catchUpFrame;
  }

  /**
   * A `chat_history` arrived (its messages already marked seen): if the room was being joined,
   * release its frames; if it answers this client's catch-up page and more follow, ask for the
   * next one. A page says which `since` it answers; a server from before that was said answers
   * only joins with `unreadCount`, and is paged on with joins as it expects. A page of older
   * messages (`get_history` with `before`) never pages on.
   */
  historyArrived(roomId, { messages, hasMore, unreadCount, since } = {}) {
    const room = this._rooms.get(roomId);
    if (!room) return;
    const answersJoin = room.joinFrame !== null;
    room.joinFrame = null;
    if (answersJoin && !room.catchUpFrame) room.catchUpRetries = 0;
    const from = room.catchUpFrame && room.catchUpFrame.data.since;
    if (from && (since !== undefined ? since === from : typeof unreadCount === 'number')) {
      room.catchUpFrame = null;
      room.catchUpRetries = 0;
      const newest = Array.isArray(messages) && messages.length ? messages[messages.length - 1] : null;
      if (hasMore && newest && typeof newest.messageId === 'string' && newest.messageId > from) {
        room.resumeFrom = newest.messageId;
        this._sendCatchUp(roomId, room, newest.messageId, CATCH_UP_PAGE, since === from ? 'get_history' : 'join_room');
      } else {
        room.resumeFrom = null; // caught up
      }
    }
    if (!room.joined) {
      room.joined = true;
      this._t.clearTimeout(room.joinTimer);
      room.joinTimer = null;
      this._ready();
    }
  }

  /** Record a message (with a string messageId) as seen. Returns true if it had been seen before. */
  markSeen(m) {
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

  _sendJoin(roomId, room) {
    const since = rewindMessageId(room.resumeFrom || room.lastMessageId, this.rejoinOverlapMs);
    room.joined = false;
    this._hold(roomId, room, this.joinTimeoutMs);
    room.joinFrame = this._sendCatchUp(roomId, room, since, room.limit ?? null);
  }

  /** Hold the room's frames for `ms` at most: if no chat_history comes back in time, let them go. */
  _hold(roomId, room, ms) {
    this._t.clearTimeout(room.joinTimer);
    room.joinTimer = this._t.setTimeout(() => {
      room.joinTimer = null;
      if (this._rooms.get(roomId) === room && !room.joined) {
        room.joined = true;
        this._ready();
      }
    }, ms);
  }

  /** A join (or a further page) from `since` (none: the newest page); its answer may ask for the next. Returns the frame sent. */
  _sendCatchUp(roomId, room, since, limit = CATCH_UP_PAGE, type = 'join_room') {
    const data = { roomId };
    if (since) data.since = since;
    if (limit) data.limit = limit;
    const frame = { type, data };
    room.catchUpFrame = since ? frame : null; // its since is what the answer must repeat
    this._write(frame);
    return frame;
  }
}
