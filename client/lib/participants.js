// participants.js: who is in each joined room, and how many, for rooms of 10 and of 10,000.
//
// The server sends a room's first page of participants (at most 100, in userId order, with the
// room's `count` and a `nextCursor` when there are more) on every join, further pages on
// `get_participants`, and then changes: `user_joined`/`user_left` in a small room, one
// coalesced `presence_update` (with the room's `count`) per interval in a large one. This
// module folds all of them into one list per room:
//   - a first page (a join's answer, or a page asked for without a cursor) replaces the list,
//     so a rejoin after a reconnect leaves no ghost and no duplicate;
//   - a page asked for with a cursor is added to it (deduplicated by userId);
//   - joins and leaves are applied; `count` is taken from the frames that carry it and kept
//     up by one per user_joined/user_left otherwise. A presence_update names at most 50 users
//     per direction: when it names fewer than it counts, the list may hold ghosts or miss
//     people, so the room is marked for a re-read from the first page (hasMore).
// An `error` frame names no room, so at most one get_participants is on the wire per client:
// an error about get_participants belongs to the one in flight. A `validation_error` on its
// cursor (the participant it paged on from has left) restarts paging from the first page
// once; a first page that fails is not retried.

import { ParleyError } from './errors.js';

const byUserId = (a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);

function isParticipant(p) {
  return !!p && typeof p === 'object' && typeof p.userId === 'string' && p.userId !== '';
}

export class ParticipantTracker {
  /**
   * @param {object} deps {timers, pageTimeoutMs, write(frame), isOpen(), canSend(frame), emit(type, ...args)}:
   *   `isOpen` says whether the socket takes frames now, `canSend` whether a frame for the room
   *   may go now (an open socket and an answered join).
   */
  constructor({ timers, pageTimeoutMs, write, isOpen, canSend, emit }) {
    this._t = timers;
    this.pageTimeoutMs = pageTimeoutMs;
    this._write = write;
    this._isOpen = isOpen;
    this._canSend = canSend;
    this._emit = emit;
    // roomId -> {members: Map userId -> Participant, count, nextCursor, resync, expect, snapshot}:
    // `expect` lists the answers on their way, oldest first: {first: true, timer} for a join,
    // {cursor} for a get_participants page (cursor undefined: a first page asked for).
    this._rooms = new Map();
    this._inFlight = null; // {roomId, cursor, timer}: the one get_participants on the wire
    this._waiting = []; // [{roomId, cursor, limit}] pages asked for while another was in flight
  }

  /** The room's participants as known now: {roomId, participants, count, hasMore, loading}. */
  snapshot(roomId) {
    const room = this._rooms.get(roomId);
    if (!room) return { roomId, participants: [], count: 0, hasMore: false, loading: false };
    if (!room.snapshot) {
      room.snapshot = Object.freeze({
        roomId,
        participants: Object.freeze([...room.members.values()].sort(byUserId)),
        count: room.count,
        hasMore: this._hasMore(room),
        loading: this._loading(roomId),
      });
    }
    return room.snapshot;
  }

  /** Keep the participants of a room this client joins (until forget()). */
  track(roomId) {
    if (!this._rooms.has(roomId)) this._rooms.set(roomId, { members: new Map(), count: 0, nextCursor: undefined, resync: false, expect: [], snapshot: null });
  }

  /** The client left the room: drop what is known of it, and any page it was waiting for. */
  forget(roomId) {
    const room = this._rooms.get(roomId);
    if (!room) return;
    this._clearExpected(room);
    this._rooms.delete(roomId);
    this._waiting = this._waiting.filter((w) => w.roomId !== roomId);
    if (this._inFlight && this._inFlight.roomId === roomId) this._release();
    this._emit('participants', this.snapshot(roomId));
  }

  /**
   * A join_room went out: its participants_list (a first page) is on the way. A join refused
   * (`forbidden`) or lost gets none: after pageTimeoutMs it is no longer waited for.
   */
  joinSent(roomId) {
    const room = this._rooms.get(roomId);
    if (!room) return;
    const entry = { first: true, timer: null };
    entry.timer = this._t.setTimeout(() => {
      const i = room.expect.indexOf(entry);
      if (i >= 0) room.expect.splice(i, 1);
    }, this.pageTimeoutMs);
    room.expect.push(entry);
  }

  /** The socket is gone: no answer to anything sent on it will come. The lists stay until the rejoin's first page replaces them. */
  reset() {
    const touched = new Set(this._waiting.map((w) => w.roomId));
    if (this._inFlight) {
      touched.add(this._inFlight.roomId);
      this._t.clearTimeout(this._inFlight.timer);
      this._inFlight = null;
    }
    this._waiting = [];
    for (const room of this._rooms.values()) this._clearExpected(room);
    for (const roomId of touched) this._changed(roomId);
  }

  /**
   * Ask for the room's next page (`loadMoreParticipants`): with the last `nextCursor`, or from the
   * first page when the list is short of `count` without a cursor or a presence_update did not
   * name everyone it counted. Throws ParleyError when there is nothing to ask for.
   */
  loadMore(roomId, { limit } = {}) {
    const room = this._rooms.get(roomId);
    if (!room) throw new ParleyError('not_joined', `loadMoreParticipants: not in room ${roomId}; joinRoom first`);
    if (this._loading(roomId) || room.expect.some((k) => k.first)) {
      throw new ParleyError('participants_loading', `loadMoreParticipants: a participants page of room ${roomId} is already on its way; wait for the 'participants' event`);
    }
    if (!this._hasMore(room)) {
      throw new ParleyError('no_more_participants', `loadMoreParticipants: every participant of room ${roomId} is loaded (hasMore is false)`);
    }
    this.request(roomId, { cursor: room.resync ? undefined : room.nextCursor, limit });
  }

  /**
   * Send get_participants now, or once the page in flight is answered and the room's join is
   * (its chat_history); a page without cursor replaces the list when it comes. Refused while the
   * socket is down: the rejoin brings a first page anyway.
   */
  request(roomId, { cursor, limit } = {}) {
    const room = this._rooms.get(roomId);
    if (!room) throw new ParleyError('not_joined', `get_participants: not in room ${roomId}; joinRoom first`);
    if (!this._isOpen()) {
      throw new ParleyError('not_ready', `get_participants: not connected; room ${roomId}'s first page comes with the rejoin`);
    }
    this._waiting.push({ roomId, cursor, limit });
    this.pump();
    this._changed(roomId);
  }

  /** Send the first waiting page that may go now, unless one is in flight (called when a room's join is answered too). */
  pump() {
    if (this._inFlight) return;
    this._waiting = this._waiting.filter((w) => this._rooms.has(w.roomId));
    const i = this._waiting.findIndex((w) => this._canSend(this._frame(w)));
    if (i < 0) return;
    const [next] = this._waiting.splice(i, 1);
    this._send(next);
  }

  // ---- frames from the server -------------------------------------------------

  participantsList(d) {
    const room = this._rooms.get(d.roomId);
    if (!room) return;
    const kind = room.expect.shift(); // a join's, a page's, or undefined (unasked)
    if (kind && kind.first) this._t.clearTimeout(kind.timer);
    const page = Array.isArray(d.participants) ? d.participants.filter(isParticipant) : [];
    const replaces = kind && !kind.cursor;
    if (replaces) {
      room.members = new Map();
      room.resync = false;
    }
    for (const p of page) room.members.set(p.userId, { userId: p.userId, name: typeof p.name === 'string' ? p.name : p.userId });
    if (typeof d.count === 'number') room.count = d.count;
    // An unasked page (a raw send) adds who it lists but says nothing about where paging stands.
    if (kind) room.nextCursor = typeof d.nextCursor === 'string' && d.nextCursor ? d.nextCursor : undefined;
    if (kind && !kind.first && this._inFlight && this._inFlight.roomId === d.roomId) this._release();
    this._changed(d.roomId);
  }

  userJoined(d) {
    const room = this._rooms.get(d.roomId);
    if (!room || typeof d.userId !== 'string') return;
    if (!room.members.has(d.userId)) room.count = Math.max(room.count + 1, room.members.size + 1);
    room.members.set(d.userId, { userId: d.userId, name: typeof d.name === 'string' ? d.name : d.userId });
    this._changed(d.roomId);
  }

  userLeft(d) {
    const room = this._rooms.get(d.roomId);
    if (!room || typeof d.userId !== 'string') return;
    if (room.members.delete(d.userId)) room.count = Math.max(room.count - 1, room.members.size);
    // Not listed: either not loaded yet (the list is short of count) or already gone.
    else if (this._hasMore(room)) room.count = Math.max(room.count - 1, room.members.size);
    else return;
    this._changed(d.roomId);
  }

  presenceUpdate(d) {
    const room = this._rooms.get(d.roomId);
    if (!room) return;
    const left = Array.isArray(d.left) ? d.left : [];
    const joined = Array.isArray(d.joined) ? d.joined : [];
    for (const p of left) if (isParticipant(p)) room.members.delete(p.userId);
    for (const p of joined) {
      if (isParticipant(p)) room.members.set(p.userId, { userId: p.userId, name: typeof p.name === 'string' ? p.name : p.userId });
    }
    // Not everyone was named: who is listed can no longer be trusted until a first page.
    if (d.leftCount > left.length || d.joinedCount > joined.length) room.resync = true;
    if (typeof d.count === 'number') room.count = d.count;
    this._changed(d.roomId);
  }

  /** An `error` frame: if it answers the get_participants in flight, settle that page. */
  error(d) {
    if (d.requestType !== 'get_participants' || !this._inFlight) return;
    const { roomId, cursor } = this._inFlight;
    const room = this._rooms.get(roomId);
    if (room) {
      const i = room.expect.findIndex((k) => !k.first);
      if (i >= 0) room.expect.splice(i, 1);
    }
    this._release();
    const staleCursor = d.code === 'validation_error' && cursor && Array.isArray(d.details) && d.details.some((x) => x && x.field === 'cursor');
    if (room && staleCursor) {
      // Start over from the first page, once: a first page has no cursor to be stale.
      room.nextCursor = undefined;
      if (this._isOpen()) {
        this._waiting.push({ roomId, cursor: undefined, limit: undefined });
        this.pump();
      }
    }
    this._changed(roomId);
  }

  // ---- internals -----------------------------------------------------------------

  _hasMore(room) {
    return room.resync || room.nextCursor !== undefined || room.members.size < room.count;
  }

  _clearExpected(room) {
    for (const k of room.expect) if (k.first) this._t.clearTimeout(k.timer);
    room.expect = [];
  }

  _loading(roomId) {
    return (this._inFlight !== null && this._inFlight.roomId === roomId) || this._waiting.some((w) => w.roomId === roomId);
  }

  _frame({ roomId, cursor, limit }) {
    const data = { roomId };
    if (cursor) data.cursor = cursor;
    if (limit) data.limit = limit;
    return { type: 'get_participants', data };
  }

  _send(page) {
    const room = this._rooms.get(page.roomId);
    room.expect.push({ cursor: page.cursor });
    // No answer at all (a lost frame): stop waiting, so the next page can be asked for.
    const timer = this._t.setTimeout(() => {
      if (this._inFlight !== entry) return;
      const i = room.expect.findIndex((k) => !k.first);
      if (i >= 0) room.expect.splice(i, 1);
      this._release();
      this._changed(page.roomId);
    }, this.pageTimeoutMs);
    const entry = { roomId: page.roomId, cursor: page.cursor, timer };
    this._inFlight = entry;
    this._write(this._frame(page));
  }

  /** The page in flight is settled: send the next one waiting that may go. */
  _release() {
    if (this._inFlight) this._t.clearTimeout(this._inFlight.timer);
    this._inFlight = null;
    this.pump();
  }

  _changed(roomId) {
    const room = this._rooms.get(roomId);
    if (!room) return;
    room.snapshot = null;
    this._emit('participants', this.snapshot(roomId));
  }
}
