// parley-react.js: the React layer over ParleyClient.
//
// It keeps the seed guide's API (WebSocketProvider, useWebSocket() ->
// {isConnected, connect, disconnect, sendMessage, on, off}, sendMessage({type,
// data})) and adds useRoom(roomId) -> {messages, participants, participantCount,
// typingUsers, send, edit, remove, react, unreadCount, ...}, useParticipants(roomId)
// -> {participants, count, hasMore, loading, loadMore} and useRooms() -> {rooms, ...}. React is a peer dependency (>= 18): this file imports it; the
// core client (../parley-client.js) never does.

import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { ParleyClient, RoomMessages } from '../parley-client.js';

const ParleyContext = createContext(null);

const TYPING_EXPIRY_MS = 6000;

/**
 * The shared state of one room: every useRoom(roomId) in a provider reads
 * the same store, and the room is joined once and left after the last one
 * unmounts.
 */
export class RoomStore {
  constructor(client, roomId, { typingExpiryMs = TYPING_EXPIRY_MS, timers } = {}) {
    this.client = client;
    this.roomId = roomId;
    this.typingExpiryMs = typingExpiryMs;
    this._t = timers || client._t || { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id) };
    this._messages = new RoomMessages(); // each message at its newest version, whatever order copies come in
    this._typing = new Map(); // userId -> timer
    this._subs = new Set();
    this.snapshot = { messages: [], participants: [], participantCount: 0, typingUsers: [], hasMore: false, joined: false, unreadCount: 0, unreadCapped: false };
    this._handlers = {
      chat_history: (d) => {
        if (d.roomId !== roomId) return;
        for (const m of d.messages || []) this._messages.put({ ...m, roomId });
        // A rejoin's older messages changed while away (edited, deleted, reacted to): only those held
        // are updated; when there were more, the client reads the held pages again (since pages, below).
        for (const m of Array.isArray(d.changed) ? d.changed : []) this._messages.refresh({ ...m, roomId });
        // hasMore describes the oldest end: only a page at least as old as what we hold may change it,
        // and never a rejoin's pages (a join's answer, with unreadCount, or a catch-up page, with since,
        // while we hold messages): they run from `since` and their hasMore says newer ones follow.
        const oldest = (d.messages || [])[0];
        const held = this.snapshot.messages.length > 0;
        const rejoin = held && (typeof d.unreadCount === 'number' || d.since !== undefined);
        const hasMore = !rejoin && (!oldest || !held || oldest.messageId <= this.snapshot.messages[0].messageId) ? !!d.hasMore : this.snapshot.hasMore;
        const patch = { messages: this._sorted(), hasMore, joined: true };
        // Only join's chat_history counts unread; get_history pages leave the count alone.
        if (typeof d.unreadCount === 'number') Object.assign(patch, { unreadCount: d.unreadCount, unreadCapped: !!d.unreadCapped });
        this._set(patch);
      },
      message_received: (m) => {
        if (m.roomId !== roomId) return;
        const fresh = this._messages.put(m);
        this._stopTyping(m.userId, false);
        const patch = { messages: this._sorted(), typingUsers: [...this._typing.keys()] };
        if (fresh && m.userId !== this._selfId() && !this.snapshot.unreadCapped) patch.unreadCount = this.snapshot.unreadCount + 1;
        this._set(patch);
      },
      message_updated: (d) => this._change('message_updated', d),
      message_deleted: (d) => this._change('message_deleted', d),
      reaction_update: (d) => this._change('reaction_update', d),
      // The client keeps the room's participants (pages, joins, leaves, presence): mirror them.
      participants: (d) => {
        if (d.roomId !== roomId) return;
        this._set({ participants: d.participants, participantCount: d.count });
      },
      user_left: (d) => {
        if (d.roomId !== roomId) return;
        this._stopTyping(d.userId, true);
      },
      presence_update: (d) => {
        if (d.roomId !== roomId) return;
        for (const p of Array.isArray(d.left) ? d.left : []) if (p) this._stopTyping(p.userId, true);
      },
      typing_update: (d) => {
        if (d.roomId !== roomId) return;
        if (d.isTyping) {
          this._t.clearTimeout(this._typing.get(d.userId));
          this._typing.set(
            d.userId,
            this._t.setTimeout(() => this._stopTyping(d.userId, true), this.typingExpiryMs),
          );
          this._set({ typingUsers: [...this._typing.keys()] });
        } else {
          this._stopTyping(d.userId, true);
        }
      },
      disconnect: () => {
        for (const t of this._typing.values()) this._t.clearTimeout(t);
        this._typing.clear();
        this._set({ joined: false, typingUsers: [] });
      },
    };
  }

  _sorted() {
    return this._messages.list();
  }

  /** The user id of this connection's token (for "is this mine"), when the token says. */
  _selfId() {
    return this.client.userId;
  }

  /** An edit, deletion or reaction: applied unless the copy held is newer (one not held yet waits for it). */
  _change(type, d) {
    if (d.roomId !== this.roomId || !this._messages.change(type, d)) return;
    this._set({ messages: this._sorted() });
  }

  /** The user marked `messageId` read: unread is what this store holds after it (the server's own count moves with it). */
  markedRead(messageId) {
    const after = this._messages.list().filter((m) => m.messageId > messageId && m.userId !== this._selfId()).length;
    this._set({ unreadCount: Math.min(after, this.snapshot.unreadCount), unreadCapped: false });
  }

  _stopTyping(userId, publish) {
    if (!this._typing.has(userId)) return;
    this._t.clearTimeout(this._typing.get(userId));
    this._typing.delete(userId);
    if (publish) this._set({ typingUsers: [...this._typing.keys()] });
  }

  _set(patch) {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const fn of [...this._subs]) fn();
  }

  subscribe = (fn) => {
    this._subs.add(fn);
    return () => this._subs.delete(fn);
  };

  getSnapshot = () => this.snapshot;

  start() {
    for (const [type, fn] of Object.entries(this._handlers)) this.client.on(type, fn);
    this.client.joinRoom(this.roomId);
    const known = this.client.participants(this.roomId);
    this._set({ participants: known.participants, participantCount: known.count });
  }

  stop() {
    for (const [type, fn] of Object.entries(this._handlers)) this.client.off(type, fn);
    for (const t of this._typing.values()) this._t.clearTimeout(t);
    this._typing.clear();
    this.client.leaveRoom(this.roomId);
  }
}

const STATUS_EVENTS = ['state', 'reconnecting', 'connect', 'connect_error'];

/**
 * {state, reconnectAttempts, error} read from the client itself on every change, so what the
 * UI shows is never an older state than the client's (no copy kept in React state that an
 * event could miss).
 */
function useConnectionStatus(client) {
  const cache = useRef(null);
  const subscribe = useCallback(
    (onChange) => {
      for (const type of STATUS_EVENTS) client.on(type, onChange);
      return () => {
        for (const type of STATUS_EVENTS) client.off(type, onChange);
      };
    },
    [client],
  );
  const getSnapshot = useCallback(() => {
    const c = cache.current;
    const state = client.state;
    const reconnectAttempts = client.reconnectAttempts;
    const error = client.lastError;
    if (c && c.client === client && c.state === state && c.reconnectAttempts === reconnectAttempts && c.error === error) return c;
    cache.current = { client, state, reconnectAttempts, error };
    return cache.current;
  }, [client]);
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/**
 * <WebSocketProvider url token|tokenProvider [options] [client] [autoConnect]>.
 * Pass `client` to share an existing ParleyClient; otherwise one is created
 * from `url`, `token`/`tokenProvider` and `options` (ParleyClientOptions).
 */
export function WebSocketProvider({ url, token, tokenProvider, options, client: givenClient, autoConnect = true, children }) {
  const [client] = useState(() => givenClient || new ParleyClient({ url, token, tokenProvider, ...(options || {}) }));
  const status = useConnectionStatus(client);

  // A new token is used from the next (re)connect on.
  useEffect(() => {
    if (token !== undefined && !givenClient) client.token = token;
  }, [client, token, givenClient]);

  useEffect(() => {
    if (autoConnect) client.connect().catch(() => {}); // the failure is client.lastError (and connect_error)
    return () => {
      if (!givenClient) client.close();
    };
  }, [client, autoConnect, givenClient]);

  const rooms = useMemo(() => new Map(), [client]); // roomId -> {store, count}

  const value = useMemo(() => {
    const on = (type, fn) => {
      client.on(type, fn);
      return () => client.off(type, fn);
    };
    return {
      client,
      rooms,
      state: status.state,
      isConnected: status.state === 'open',
      reconnectAttempts: status.reconnectAttempts,
      error: status.error,
      connect: () => client.connect(),
      disconnect: () => client.close(),
      sendMessage: (message) => client.sendMessage(message),
      on,
      off: (type, fn) => {
        client.off(type, fn);
      },
    };
  }, [client, rooms, status]);

  return createElement(ParleyContext.Provider, { value }, children);
}

function useParleyContext(hook) {
  const ctx = useContext(ParleyContext);
  if (!ctx) throw new Error(`${hook} must be used inside <WebSocketProvider>`);
  return ctx;
}

/**
 * The seed guide's hook: {isConnected, connect, disconnect, sendMessage, on, off},
 * plus {state, reconnectAttempts, error, client}.
 * `on(type, fn)` returns a function that removes the listener.
 */
export function useWebSocket() {
  return useParleyContext('useWebSocket');
}

/** Subscribe to one event type for the lifetime of the component. */
export function useParleyEvent(type, handler) {
  const { client } = useParleyContext('useParleyEvent');
  useEffect(() => {
    client.on(type, handler);
    return () => client.off(type, handler);
  }, [client, type, handler]);
}

const EMPTY = Object.freeze({ messages: [], participants: [], participantCount: 0, typingUsers: [], hasMore: false, joined: false, unreadCount: 0, unreadCapped: false });
const noopSubscribe = () => () => {};

/**
 * Join `roomId` while mounted (shared by every component using the same room).
 * Returns {messages, participants, typingUsers, send, setTyping, markRead,
 * loadOlder, hasMore, joined}. `send(text)` returns the clientMessageId.
 */
export function useRoom(roomId) {
  const { client, rooms } = useParleyContext('useRoom');
  const [store, setStore] = useState(null);

  useEffect(() => {
    if (!roomId) {
      setStore(null);
      return undefined;
    }
    let entry = rooms.get(roomId);
    if (!entry) {
      entry = { store: new RoomStore(client, roomId), count: 0 };
      rooms.set(roomId, entry);
      entry.store.start();
    }
    entry.count += 1;
    setStore(entry.store);
    return () => {
      entry.count -= 1;
      if (entry.count === 0) {
        rooms.delete(roomId);
        entry.store.stop();
      }
    };
  }, [client, rooms, roomId]);

  const live = store && store.roomId === roomId ? store : null;
  const snap = useSyncExternalStore(live ? live.subscribe : noopSubscribe, live ? live.getSnapshot : () => EMPTY, live ? live.getSnapshot : () => EMPTY);

  const send = useCallback((text) => client.sendChatMessage(roomId, text), [client, roomId]);
  const setTyping = useCallback((isTyping) => client.setTyping(roomId, isTyping), [client, roomId]);
  const markRead = useCallback(
    (messageId) => {
      client.markRead(roomId, messageId);
      if (live) live.markedRead(messageId);
    },
    [client, roomId, live],
  );
  const edit = useCallback((messageId, text) => client.editMessage(roomId, messageId, text), [client, roomId]);
  const remove = useCallback((messageId) => client.deleteMessage(roomId, messageId), [client, roomId]);
  const react = useCallback((messageId, emoji, options) => client.react(roomId, messageId, emoji, options), [client, roomId]);
  const loadOlder = useCallback(
    (limit) => client.getHistory(roomId, snap.messages.length ? snap.messages[0].messageId : undefined, limit ? { limit } : undefined),
    [client, roomId, snap.messages],
  );

  return {
    messages: snap.messages,
    participants: snap.participants,
    participantCount: snap.participantCount,
    typingUsers: snap.typingUsers,
    hasMore: snap.hasMore,
    joined: snap.joined,
    unreadCount: snap.unreadCount,
    unreadCapped: snap.unreadCapped,
    send,
    setTyping,
    markRead,
    loadOlder,
    edit,
    remove,
    react,
  };
}

/**
 * A joined room's participants as the client keeps them: {participants, count, hasMore,
 * loading, loadMore}. It does not join the room (useRoom or client.joinRoom does); `count` is
 * the room's size from the server, so "N online" is right before every page is loaded.
 * `loadMore()` asks for the next page and does nothing when there is none or one is on its way
 * (client.loadMoreParticipants throws for those; the hook's callers are buttons and scroll ends).
 */
export function useParticipants(roomId) {
  const { client } = useParleyContext('useParticipants');
  const subscribe = useCallback(
    (onChange) => {
      const fn = (d) => {
        if (d.roomId === roomId) onChange();
      };
      client.on('participants', fn);
      return () => client.off('participants', fn);
    },
    [client, roomId],
  );
  // participants() returns the same object until the room changes; an unknown room gets a new
  // empty one per call, so it is cached here (useSyncExternalStore needs a stable snapshot).
  const empty = useRef(null);
  const getSnapshot = useCallback(() => {
    const snap = client.participants(roomId);
    if (snap.participants.length || snap.count || snap.hasMore || snap.loading) return snap;
    if (!empty.current || empty.current.roomId !== roomId) empty.current = snap;
    return empty.current;
  }, [client, roomId]);
  const snap = useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
  const loadMore = useCallback(
    (options) => {
      const now = client.participants(roomId);
      if (!now.hasMore || now.loading) return;
      try {
        client.loadMoreParticipants(roomId, options);
      } catch (err) {
        if (!err || (err.code !== 'not_ready' && err.code !== 'participants_loading')) throw err;
      }
    },
    [client, roomId],
  );
  return { participants: snap.participants, count: snap.count, hasMore: snap.hasMore, loading: snap.loading, loadMore };
}

/**
 * The user's rooms, newest activity first (`get_rooms`): {rooms, nextCursor,
 * loading, refresh, loadMore}. Asked for on mount and on every (re)connect;
 * `refresh()` asks again from the first page, `loadMore()` appends the next.
 */
export function useRooms({ limit } = {}) {
  const { client, isConnected } = useParleyContext('useRooms');
  const [state, setState] = useState({ rooms: [], nextCursor: null, loading: false, appending: false });

  useEffect(() => {
    const onList = (d) =>
      setState((s) => {
        const incoming = Array.isArray(d.rooms) ? d.rooms : [];
        if (!s.appending) return { rooms: incoming, nextCursor: d.nextCursor ?? null, loading: false, appending: false };
        const seen = new Set(incoming.map((r) => r.roomId));
        return { rooms: [...s.rooms.filter((r) => !seen.has(r.roomId)), ...incoming], nextCursor: d.nextCursor ?? null, loading: false, appending: false };
      });
    client.on('rooms_list', onList);
    return () => client.off('rooms_list', onList);
  }, [client]);

  const refresh = useCallback(() => {
    setState((s) => ({ ...s, loading: true, appending: false }));
    client.getRooms(limit ? { limit } : {});
  }, [client, limit]);

  const loadMore = useCallback(() => {
    if (!state.nextCursor) return;
    setState((s) => ({ ...s, loading: true, appending: true }));
    client.getRooms({ ...(limit ? { limit } : {}), cursor: state.nextCursor });
  }, [client, limit, state.nextCursor]);

  useEffect(() => {
    if (isConnected) refresh();
  }, [isConnected, refresh]);

  return { rooms: state.rooms, nextCursor: state.nextCursor, loading: state.loading, refresh, loadMore };
}

export { ParleyClient };
