// rooms.js: the rooms this client is in, and what it has seen in each.
//
// After a reconnect every room is rejoined with `since` a little before the
// newest messageId seen there (`rejoinOverlapMs`): messages from different
// senders are stored slightly out of messageId order (each handler takes its
// id before it writes), so one older than the newest seen may still have been
// on its way when the socket went down. A `since` page with `hasMore` is
// followed by the next (`get_history` with `since` = its newest), until the
// room is caught up.
// A rejoin's answer also carries the older messages changed while the client was away
// (`changed`, which the app merges into what it holds); when the server had more of them than it
// sent (`moreChanged`), every page held from before is read again: `get_history` with `since` from
// just before the oldest message still remembered as seen, page by page, up to the rejoin's `since`.
// A re-read cut short by a dropped socket goes on, from the page it had got to, once the next rejoin
// is answered: that rejoin's `since` is later, so its `changed` cannot stand for what was left.
// Frames for a room wait until its first `chat_history` (the rejoin's answer)
// arrives, so a member-only frame never reaches the server before the join.
// A join refused for a reason that passes (`rate_limited`: the server limits
// joins per user, and a reconnect from several tabs rejoins many rooms at
// once; `internal_error`) is sent again after the error's `retryAfterMs` (a
// few times at most for `internal_error`; a `rate_limited` one until it goes
// through, paced by the pause below), and the room's frames keep waiting for
// it meanwhile. A join refused `forbidden` names its room and ends at once.
// Joins are paced: at most MAX_JOINS_IN_FLIGHT unanswered on a socket, the rest
// queued (their frames held), and none sent for the `retryAfterMs` of a join
// refused `rate_limited`, so a reconnect in hundreds of rooms from several tabs
// stays far below the server's flood line (10 times the joins allowance).
// Message ids already seen are remembered (the newest SEEN_PER_ROOM of each
// room) to drop the duplicates the overlap, a rejoin or a server retry can
// bring: all of these are recent, so an older page never pushes them out.

import { ParleyError } from './errors.js';
import { ROOM_ID_RE } from './protocol.js';
import { isMessageId, rewindMessageId } from './ids.js';

const SEEN_PER_ROOM = 2000;
// The largest page the server allows: a long absence takes few requests.
const CATCH_UP_PAGE = 100;
// A join or catch-up page refused for a reason that may pass is asked again after this (or the
// error's retryAfterMs); one refused `internal_error` at most this many times in a row (a
// `rate_limited` one spends no retry: retryAfterMs paces it).
const CATCH_UP_RETRY_MS = 1000;
const CATCH_UP_RETRIES = 5;
const RETRYABLE = new Set(['internal_error', 'rate_limited']);
// The answers a room may be waiting for: its join, its catch-up after a rejoin (a join with `since`
// is both), and the re-read of older pages.
const AWAITED = ['joinFrame', 'catchUpFrame', 'refreshFrame'];
// Joins unanswered at once on one socket. The server allows 100 joins per user per 10 s and closes a
// connection past 10 times that, refused frames included. A tab stops sending at its first
// `rate_limited`, so a window sees at most the allowance plus 20 refused per tab: below the flood line
// for up to 45 tabs. 20 still rejoins 350 rooms in under 20 round trips, and bounds the burst of
// answers (each a participants page and a history page of up to 128 KB) arriving at once.
const MAX_JOINS_IN_FLIGHT = 20;

/** Throw for a join the server would refuse: nothing may be kept of it, nor asked again on every rejoin. */
export function checkJoin(roomId, since) {
  if (typeof roomId !== 'string' || !ROOM_ID_RE.test(roomId)) throw new ParleyError('invalid_room', `invalid roomId: ${roomId}`);
  if (since != null && !isMessageId(since)) throw new ParleyError('invalid_since', `invalid since (not a messageId): ${since}`);
}

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
    // roomId -> {lastMessageId, joined, joinTimer, limit, joinFrame (the join awaiting its answer),
    //   catchUpFrame (the page awaited), resumeFrom, refreshFrame (the older page awaited), refreshFrom,
    //   refreshUpTo and refreshPagesLeft (the re-read still to do: kept across a reconnect), retry: {joinFrame|catchUpFrame|refreshFrame: {count, timer}}}
    this._rooms = new Map();
    this._seen = new Map(); // roomId -> {set:Set, order:string[] (ascending)}
    this._joinQueue = new Set(); // rooms whose join waits for a free place (roomIds, in order)
    this._joinsInFlight = new Set(); // rooms whose join is sent and neither answered nor timed out
    this._joinPause = null; // the timer ending a pause after a join refused rate_limited
    // Rooms whose join timed out unanswered on this socket -> the internal_error retries spent. A
    // refusal naming no room may be theirs: they are joined again (through the queue), or their join
    // would never be answered.
    this._timedOut = new Map();
    this._toRequeue = new Set(); // timed-out rooms to queue again when _requeueTimer fires
    this._requeueTimer = null;
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
    checkJoin(roomId, since);
    let room = this._rooms.get(roomId);
    if (!room) {
      room = {
        lastMessageId: since, joined: false, joinTimer: null, limit, joinFrame: null, catchUpFrame: null,
        resumeFrom: null, refreshFrame: null, refreshFrom: null, refreshUpTo: null, refreshPagesLeft: 0,
        retry: Object.fromEntries(AWAITED.map((key) => [key, { count: 0, timer: null }])),
      };
      this._rooms.set(roomId, room);
    } else {
      if (since && (!room.lastMessageId || since > room.lastMessageId)) room.lastMessageId = since;
      if (limit) room.limit = limit;
    }
    if (!connected) return;
    // A join waiting for its place or its answer (or its retry) is the one join: sending another
    // would spend the allowance twice, and leave() must still know that one went.
    if (this._joinQueue.has(roomId) || (!room.joined && this._joinsInFlight.has(roomId))) return;
    if (!room.joined) {
      this._queueJoin(roomId);
      return;
    }
    // Joined on this socket already: its frames keep going, and the join (for a new since or limit)
    // goes at once, as one the app asked for, not queued behind a pause that would hold them. It is
    // awaited like any other, so a refusal that passes sends it again.
    this._endJoin(room);
    this._dispatchJoin(roomId, room);
  }

  /**
   * Forget a room: it is no longer rejoined and its seen ids are dropped. Returns true when its join
   * was still queued and none was sent on this socket: there is nothing to leave, and a leave_room
   * would spend the joins allowance for nothing.
   */
  leave(roomId) {
    const room = this._rooms.get(roomId);
    const queued = this._joinQueue.has(roomId) && !room.sentOnSocket;
    this._timedOut.delete(roomId);
    this._toRequeue.delete(roomId);
    if (room) {
      this._t.clearTimeout(room.joinTimer);
      for (const key of AWAITED) this._t.clearTimeout(room.retry[key].timer);
      this._rooms.delete(roomId);
    }
    this._seen.delete(roomId);
    this._joinQueue.delete(roomId);
    if (this._joinsInFlight.delete(roomId)) this._pumpJoins();
    return queued;
  }

  /** On a new socket: join every room, each with `since` = the newest messageId seen there. */
  rejoinAll() {
    // A room the app joined already on this socket (in a 'connect' listener, which runs first) is not joined twice.
    for (const roomId of this._rooms.keys()) if (!this._joinQueue.has(roomId) && !this._joinsInFlight.has(roomId)) this._queueJoin(roomId);
  }

  /**
   * The socket is gone: every room must be joined again before its frames go. A room whose catch-up
   * was under way keeps where it had got to (`resumeFrom`): its rejoin asks from there, not from the
   * newest message seen, which live messages may have moved past pages not fetched yet. A re-read
   * of older pages keeps where it had got to too (`refreshFrom`, up to `refreshUpTo`), and goes on
   * once the rejoin is answered: the rejoin's `changed` starts at its own, later `since`.
   */
  reset() {
    for (const r of this._rooms.values()) {
      r.joined = false;
      r.sentOnSocket = false;
      this._t.clearTimeout(r.joinTimer);
      r.joinTimer = null;
      for (const key of AWAITED) {
        this._t.clearTimeout(r.retry[key].timer);
        r.retry[key] = { count: 0, timer: null }; // a new socket starts a new run of retries
        r[key] = null;
      }
    }
    this._joinQueue.clear();
    this._joinsInFlight.clear();
    this._t.clearTimeout(this._joinPause);
    this._joinPause = null;
    this._timedOut.clear();
    this._toRequeue.clear();
    this._t.clearTimeout(this._requeueTimer);
    this._requeueTimer = null;
  }

  /**
   * An `error` frame. One answering a join, a catch-up page or a re-read older page for a reason
   * that may pass (`internal_error`, `rate_limited`) does not say which room it was: every frame of
   * its type still unanswered is sent again after a pause, a few times at most; one answered
   * meanwhile is not. A join's room keeps holding its frames until the retry has had
   * `joinTimeoutMs` to be answered, so a queued message does not reach the room before its join. A
   * page answered twice is taken once (the second answer's `since` is no longer the one awaited); a
   * room joined twice is harmless. Only joins still in flight are sent again: one that timed out has
   * given its place to another, and sending it again would go past MAX_JOINS_IN_FLIGHT. A join
   * refused `rate_limited` spends no retry: the pause paces it, and with several tabs the same rooms
   * can be refused window after window until the allowance comes round to them.
   * A join that timed out may be the refused one too: its room is queued again after the pause (a
   * few times at most for `internal_error`), taking its place among the joins in flight.
   * A join refused for a reason that does not pass (`forbidden`) names its room: that join is over
   * at once (its place freed, its frames let go so the app sees them refused too), rather than
   * holding a place for joinTimeoutMs.
   */
  error({ requestType, code, retryAfterMs, roomId: refused } = {}) {
    if (requestType === 'join_room' && !RETRYABLE.has(code) && typeof refused === 'string') {
      this._joinRefused(refused);
      return;
    }
    if ((requestType !== 'get_history' && requestType !== 'join_room') || !RETRYABLE.has(code)) return;
    const delay = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : CATCH_UP_RETRY_MS;
    const pause = requestType === 'join_room' && code === 'rate_limited' && !this._joinPause;
    for (const [roomId, room] of this._rooms) {
      AWAITED.forEach((key, i) => {
        const retry = room.retry[key];
        const frame = room[key];
        // A join with since is the join and the catch-up page: its retries are the join's.
        const sameAsEarlier = AWAITED.slice(0, i).some((earlier) => room[earlier] === frame);
        if (!frame || frame.type !== requestType || sameAsEarlier || retry.timer) return;
        if (frame.type === 'join_room' && !this._joinsInFlight.has(roomId)) return;
        // A refusal for the allowance spends no retry: the pause (retryAfterMs) spaces them, and a
        // reconnect in many rooms may need several windows for its joins and catch-up pages.
        const free = code === 'rate_limited';
        if (!free && retry.count >= CATCH_UP_RETRIES) return;
        if (!free) retry.count += 1;
        // The hold keeps the join's place (and, before its first answer, its room's frames).
        if (key === 'joinFrame') this._hold(roomId, room, delay + this.joinTimeoutMs);
        retry.timer = this._t.setTimeout(() => {
          retry.timer = null;
          if (this._rooms.get(roomId) === room && room[key] === frame) this._write(frame);
        }, delay);
      });
    }
    // The joins allowance is spent until retryAfterMs: no new join goes before then (set after the
    // retries above, so the refused ones go first when it ends).
    if (pause) {
      this._joinPause = this._t.setTimeout(() => {
        this._joinPause = null;
        this._pumpJoins();
      }, delay);
    }
    if (requestType === 'join_room') this._requeueTimedOut(code, delay);
  }

  /**
   * Queue again, after `delay`, the joins that timed out and may be the one just refused. Their rooms'
   * frames were let go at the timeout and keep going: only the join goes again.
   */
  _requeueTimedOut(code, delay) {
    for (const [roomId, count] of this._timedOut) {
      if (this._joinQueue.has(roomId) || this._joinsInFlight.has(roomId) || this._toRequeue.has(roomId)) continue;
      if (code !== 'rate_limited') {
        if (count >= CATCH_UP_RETRIES) continue;
        this._timedOut.set(roomId, count + 1);
      }
      this._toRequeue.add(roomId);
    }
    if (this._requeueTimer || !this._toRequeue.size) return;
    this._requeueTimer = this._t.setTimeout(() => {
      this._requeueTimer = null;
      const due = [...this._toRequeue];
      this._toRequeue.clear();
      for (const roomId of due) {
        const room = this._rooms.get(roomId);
        if (room && this._timedOut.has(roomId) && !this._joinQueue.has(roomId) && !this._joinsInFlight.has(roomId)) this._queueJoin(roomId);
      }
    }, delay);
  }

  /** The join of `roomId` was refused for good: end it now, so the queue moves and its frames go. */
  _joinRefused(roomId) {
    this._timedOut.delete(roomId);
    this._toRequeue.delete(roomId);
    const room = this._rooms.get(roomId);
    if (!room || !this._joinsInFlight.delete(roomId)) return;
    if (room.catchUpFrame === room.joinFrame) room.catchUpFrame = null; // no answer will come
    this._endJoin(room);
    if (!room.joined) {
      room.joined = true;
      this._ready();
    }
    this._pumpJoins();
  }

  /** The room's join is no longer awaited: no hold, no retry of it, and nothing sends it again. */
  _endJoin(room) {
    this._t.clearTimeout(room.joinTimer);
    room.joinTimer = null;
    this._t.clearTimeout(room.retry.joinFrame.timer);
    room.retry.joinFrame = { count: 0, timer: null };
    room.joinFrame = null;
  }

  /**
   * A `chat_history` arrived (its messages already marked seen): if the room was being joined,
   * release its frames; if it answers this client's catch-up page and more follow, ask for the
   * next one. A page says which `since` it answers; a server from before that was said answers
   * only joins with `unreadCount`, and is paged on with joins as it expects. A page of older
   * messages (`get_history` with `before`) never pages on.
   */
  historyArrived(roomId, { messages, hasMore, unreadCount, since, moreChanged } = {}) {
    const room = this._rooms.get(roomId);
    if (!room) return;
    // A page repeating the since of a catch-up or re-read page awaited (and not the join's) answers
    // that page: the join (the app's, sent meanwhile) is still awaited, and its retry still due.
    const page = since !== undefined && !(room.joinFrame && room.joinFrame.data.since === since)
      && [room.catchUpFrame, room.refreshFrame].some((f) => f && f.type === 'get_history' && f.data.since === since);
    if (room.joinFrame && !page) {
      room.joinFrame = null;
      room.retry.joinFrame.count = 0;
    }
    const freed = !page && this._joinsInFlight.delete(roomId);
    if (!page) {
      this._timedOut.delete(roomId);
      this._toRequeue.delete(roomId);
      // The join is answered: its hold ends here, also for a room joined already (whose frames were
      // never held), else the timer would later count the answered join as timed out and send it again.
      this._t.clearTimeout(room.joinTimer);
      room.joinTimer = null;
    }
    const from = room.catchUpFrame && room.catchUpFrame.data.since;
    const newest = Array.isArray(messages) && messages.length ? messages[messages.length - 1] : null;
    const after = (position) => hasMore && newest && typeof newest.messageId === 'string' && newest.messageId > position;
    if (from && (since !== undefined ? since === from : typeof unreadCount === 'number')) {
      room.catchUpFrame = null;
      room.retry.catchUpFrame.count = 0;
      // Only a rejoin's answer says moreChanged: the changes it sent were not all of them.
      if (moreChanged === true) this._rereadHeld(roomId, room, from);
      else if (room.refreshFrom && !room.refreshFrame) this._sendRefresh(roomId, room, room.refreshFrom); // cut short by a drop
      if (after(from)) {
        room.resumeFrom = newest.messageId;
        this._sendCatchUp(roomId, room, newest.messageId, CATCH_UP_PAGE, since === from ? 'get_history' : 'join_room');
      } else {
        room.resumeFrom = null; // caught up
      }
    } else if (room.refreshFrame && since !== undefined && since === room.refreshFrame.data.since) {
      room.refreshFrame = null;
      room.retry.refreshFrame.count = 0;
      room.refreshPagesLeft -= 1;
      if (after(since) && newest.messageId < room.refreshUpTo && room.refreshPagesLeft > 0) this._sendRefresh(roomId, room, newest.messageId);
      else room.refreshFrom = room.refreshUpTo = null; // every page held is read again, or as many as the bound allows
    }
    if (!room.joined) {
      room.joined = true;
      this._t.clearTimeout(room.joinTimer);
      room.joinTimer = null;
      this._ready();
    }
    if (freed) this._pumpJoins();
  }

  /**
   * Record a message (with a string messageId) as seen. Returns true if it had been seen before.
   * The newest SEEN_PER_ROOM ids are kept (ULIDs sort by time): the duplicates to drop are recent,
   * so an id older than all of a full set is not kept, and a page of old messages (scrolled back to,
   * or read again) never pushes out the recent ones.
   */
  markSeen(m) {
    const roomId = m.roomId;
    if (typeof roomId !== 'string') return false;
    let seen = this._seen.get(roomId);
    if (!seen) {
      seen = { set: new Set(), order: [] };
      this._seen.set(roomId, seen);
    }
    const id = m.messageId;
    if (seen.set.has(id)) return true;
    const room = this._rooms.get(roomId);
    // The greatest is the rejoin `since`.
    if (room && (!room.lastMessageId || id > room.lastMessageId)) room.lastMessageId = id;
    let at = seen.order.length; // messages come mostly newest last: search from the end
    while (at > 0 && seen.order[at - 1] > id) at -= 1;
    if (seen.order.length >= SEEN_PER_ROOM) {
      if (at === 0) return false;
      seen.set.delete(seen.order.shift());
      at -= 1;
    }
    seen.order.splice(at, 0, id);
    seen.set.add(id);
    return false;
  }

  /**
   * Read every page held from before `upTo` (a rejoin's since) again, from just before the oldest
   * message still remembered: the pages before it are as old as the tracker forgets, and each page
   * costs a request of the user's signals allowance (typing, mark_read and reactions share it), so
   * at most SEEN_PER_ROOM / CATCH_UP_PAGE pages per room. That is counted, not left to the ids: the
   * remembered ones need not be contiguous (a permalink far back is remembered too), and the pages
   * between them are read as well. The count is kept with refreshFrom, so a drop does not restart it.
   */
  _rereadHeld(roomId, room, upTo) {
    const seen = this._seen.get(roomId);
    const oldest = seen && seen.order[0];
    if (!oldest || oldest > upTo || room.refreshFrame) return;
    room.refreshUpTo = upTo;
    room.refreshPagesLeft = SEEN_PER_ROOM / CATCH_UP_PAGE;
    this._sendRefresh(roomId, room, rewindMessageId(oldest, 1));
  }

  _sendRefresh(roomId, room, since) {
    room.refreshFrom = since;
    room.refreshFrame = { type: 'get_history', data: { roomId, since, limit: CATCH_UP_PAGE } };
    this._write(room.refreshFrame);
  }

  /** The room's join waits for a place among those in flight; its frames wait for it. */
  _queueJoin(roomId) {
    this._joinQueue.add(roomId);
    this._pumpJoins();
  }

  /** Send queued joins while fewer than MAX_JOINS_IN_FLIGHT are unanswered and no refusal pauses them. */
  _pumpJoins() {
    while (!this._joinPause && this._joinsInFlight.size < MAX_JOINS_IN_FLIGHT && this._joinQueue.size) {
      const roomId = this._joinQueue.values().next().value;
      this._joinQueue.delete(roomId);
      const room = this._rooms.get(roomId);
      if (room) this._dispatchJoin(roomId, room);
    }
  }

  /** Send the room's join now, in flight (its place taken) and held for its answer. */
  _dispatchJoin(roomId, room) {
    this._joinsInFlight.add(roomId);
    this._hold(roomId, room, this.joinTimeoutMs);
    this._sendJoin(roomId, room);
  }

  /** Send the room's join from where it has got to; leave() then knows the server may count it in. */
  _sendJoin(roomId, room) {
    const since = rewindMessageId(room.resumeFrom || room.lastMessageId, this.rejoinOverlapMs);
    // A catch-up page on its way goes on: the app's join does not take its place (its answer would be dropped).
    const catchUp = room.resumeFrom && room.catchUpFrame;
    room.joinFrame = this._sendCatchUp(roomId, room, since, room.limit ?? null);
    if (catchUp) room.catchUpFrame = catchUp;
    room.sentOnSocket = true;
    // A join sent again after it timed out goes on with the retries its room has spent on this socket.
    room.retry.joinFrame.count = this._timedOut.get(roomId) ?? 0;
  }

  /**
   * Hold the room's frames for `ms` at most: if no chat_history comes back in time, let them go, and
   * count the join as no longer in flight (a server that never answers must not stall the queue):
   * it is not sent again either, but a late answer is still taken as its room's history.
   */
  _hold(roomId, room, ms) {
    this._t.clearTimeout(room.joinTimer);
    room.joinTimer = this._t.setTimeout(() => {
      room.joinTimer = null;
      if (this._rooms.get(roomId) !== room) return;
      this._timedOut.set(roomId, Math.max(this._timedOut.get(roomId) ?? 0, room.retry.joinFrame.count));
      this._endJoin(room);
      if (!room.joined) {
        room.joined = true;
        this._ready();
      }
      if (this._joinsInFlight.delete(roomId)) this._pumpJoins();
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
