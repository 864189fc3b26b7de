// Type declarations for parley-client.js (Parley chat protocol, version 1).
// The wire contract is PROTOCOL.md; every frame is `{type, data}`.

export declare const PROTOCOL_VERSION: 1;
export declare const SERVER_TYPES: readonly ServerType[];
export declare const CLIENT_TYPES: readonly ClientType[];
export declare const CLIENT_EVENTS: readonly ClientEventName[];
export declare const ROOM_ID_RE: RegExp;
/** The largest client frame, in UTF-8 bytes (32 KB): send() throws ParleyError `frame_too_large` above it. */
export declare const MAX_CLIENT_FRAME_BYTES: 32768;
/** `dm:<a>:<b>`, the two user ids in sorting order: the room only those two users may read and write. */
export declare function dmRoomId(userA: string, userB: string): RoomId;

// ---- identifiers ---------------------------------------------------------

/** `^[A-Za-z0-9_.:-]{1,64}$` */
export type RoomId = string;
/** ULID, 26 characters, sorts by time; assigned by the server. */
export type MessageId = string;
/** 1..64 characters, chosen by the client. */
export type ClientMessageId = string;
/** ISO-8601 UTC with milliseconds and `Z`, set by the server. */
export type Timestamp = string;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A stored chat message. */
export interface Message {
  messageId: MessageId;
  roomId: RoomId;
  userId: string;
  name: string;
  message: string;
  timestamp: Timestamp;
  /** Writes to the message so far: 1 when stored, +1 per edit, deletion or reaction change. Absent from a server before versions: read as 0 (`versionOf`). */
  version?: number;
  clientMessageId?: ClientMessageId;
  /** Set once the author edited it. */
  editedAt?: Timestamp;
  /** Emoji -> number of users, most used first; absent when none. */
  reactions?: Record<string, number>;
}

/** A deleted message as history returns it: no text, no reactions. */
export interface Tombstone {
  messageId: MessageId;
  roomId: RoomId;
  userId: string;
  name: string;
  timestamp: Timestamp;
  version?: number;
  /** The sender's, as on the message it was: a retried message is acknowledged by its tombstone too. */
  clientMessageId?: ClientMessageId;
  deleted: true;
  deletedBy: string;
  deletedAt: Timestamp;
}

export type HistoryMessage = Message | Tombstone;

/** One room of `rooms_list`. */
export interface RoomSummary {
  roomId: RoomId;
  /** Messages after the user's read cursor, exact up to 100. */
  unreadCount: number;
  /** True when there are more than 100 (unreadCount is then 100). */
  unreadCapped: boolean;
  /** The newest message (text cut to 200 characters, then `truncated: true`), a tombstone, or null. */
  lastMessage: (Omit<Message, 'reactions' | 'clientMessageId'> & { truncated?: true }) | Tombstone | null;
}

/** What a token's `rooms` claim can grant in a room. */
export type RoomAction = 'read' | 'write' | 'moderate';

export interface Participant {
  userId: string;
  name: string;
}

/** What the client knows of a joined room's participants (`participants(roomId)`, the `participants` event). */
export interface ParticipantsState {
  roomId: RoomId;
  /** Each user once, in userId order: the pages loaded so far, with joins and leaves applied. */
  readonly participants: readonly Participant[];
  /** The room's participants as the server last counted them ("N online"); may exceed `participants.length`. */
  count: number;
  /** More participants than are listed: loadMoreParticipants() fetches them. */
  hasMore: boolean;
  /** A get_participants page of this room is on its way. */
  loading: boolean;
}

// ---- client to server -----------------------------------------------------

export interface ClientFrames {
  message: { message: JsonValue };
  join_room: { roomId: RoomId; since?: MessageId; limit?: number };
  leave_room: { roomId: RoomId };
  chat_message: { roomId: RoomId; message: string; clientMessageId?: ClientMessageId };
  typing: { roomId: RoomId; isTyping: boolean };
  mark_read: { roomId: RoomId; messageId: MessageId };
  get_history: { roomId: RoomId; before?: MessageId; since?: MessageId; limit?: number };
  ping: Record<string, never>;
  edit_message: { roomId: RoomId; messageId: MessageId; message: string };
  delete_message: { roomId: RoomId; messageId: MessageId };
  react: { roomId: RoomId; messageId: MessageId; emoji: string; remove?: boolean };
  get_rooms: { limit?: number; cursor?: string };
  get_participants: { roomId: RoomId; cursor?: string; limit?: number };
}
export type ClientType = keyof ClientFrames;

// ---- server to client -----------------------------------------------------

export type ErrorCode =
  | 'invalid_json'
  | 'unknown_type'
  | 'validation_error'
  | 'not_a_member'
  | 'rate_limited'
  | 'forbidden'
  | 'internal_error';

export interface ChatUpdateDelivered {
  roomId: RoomId;
  messageId: MessageId;
  status: 'delivered';
  /** Other connections in the room the frame was accepted for (the sender's own not counted). */
  deliveredTo: number;
}
/** The answer in a room above the fan-out shard size: stored, and being delivered by parallel shards. */
export interface ChatUpdateSent {
  roomId: RoomId;
  messageId: MessageId;
  status: 'sent';
  /** Other connections the shards deliver to. */
  recipients: number;
}
export interface ChatUpdateRead {
  roomId: RoomId;
  messageId: MessageId;
  status: 'read';
  userId: string;
}

export interface ServerFrames {
  message_response: { status: 'received'; message: JsonValue; timestamp: Timestamp };
  participants_list: { roomId: RoomId; participants: Participant[]; count: number; nextCursor?: string };
  /** Oldest first. `unreadCount`/`unreadCapped` only when it answers join_room. */
  /** `since`: the request's, repeated, when it asked for the page after a messageId (a catch-up page). */
  /**
   * `changed` and `moreChanged` come with the answer to a join with `since` (a rejoin) from a server
   * of 2026-11-29 (late night) or later: the messages at or before `since` changed (edited, deleted, reacted to)
   * at or after its time, as they stand now, newest change first; `moreChanged`: there were more than
   * it sent (ParleyClient then reads again the older pages it still remembers, at most 2000 messages,
   * with get_history `since`; a drop in the middle of it goes on after the next rejoin).
   */
  chat_history: {
    roomId: RoomId; messages: HistoryMessage[]; hasMore: boolean; unreadCount?: number; unreadCapped?: boolean; since?: MessageId;
    changed?: HistoryMessage[]; moreChanged?: boolean;
  };
  user_joined: { roomId: RoomId; userId: string; name: string; timestamp: Timestamp };
  user_left: { roomId: RoomId; userId: string; timestamp: Timestamp };
  /** A tombstone only when it answers a retry (the same clientMessageId) of a message deleted since. */
  message_received: HistoryMessage;
  chat_update: ChatUpdateDelivered | ChatUpdateSent | ChatUpdateRead;
  /** A large room's arrivals and departures since the last one; at most 50 named per direction, `joinedCount`/`leftCount` the totals. */
  presence_update: { roomId: RoomId; joined: Participant[]; left: Participant[]; joinedCount: number; leftCount: number; count: number };
  typing_update: { roomId: RoomId; userId: string; isTyping: boolean };
  pong: { timestamp: Timestamp };
  /** `version`: the message's after this change (see RoomMessages). */
  message_updated: { roomId: RoomId; messageId: MessageId; message: string; editedAt: Timestamp; version?: number };
  message_deleted: { roomId: RoomId; messageId: MessageId; deletedBy: string; version?: number };
  reaction_update: {
    roomId: RoomId;
    messageId: MessageId;
    userId: string;
    emoji: string;
    action: 'added' | 'removed';
    counts: Record<string, number>;
    version?: number;
  };
  rooms_list: { rooms: RoomSummary[]; nextCursor: string | null };
  error: {
    code: ErrorCode | string;
    message: string;
    requestType?: string;
    clientMessageId?: ClientMessageId;
    details?: unknown;
    retryAfterMs?: number;
    /** With `forbidden`: the room and the action the token does not grant. */
    roomId?: RoomId;
    action?: RoomAction;
  };
}
export type ServerType = keyof ServerFrames;

export interface Frame<T extends string = string, D = unknown> {
  type: T;
  data: D;
}

// ---- client events ---------------------------------------------------------

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface DisconnectInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  willReconnect: boolean;
}

export interface ReconnectingInfo {
  /** 1 for the first retry after a drop. */
  attempt: number;
  delayMs: number;
  lastClose: { code: number; reason: string; wasClean: boolean } | null;
  /** Set when the attempt failed before any socket: tokenProvider threw, rejected or timed out (code `token_unavailable`). */
  error: ParleyConnectionError | null;
}

export interface FrameLogEntry {
  direction: 'in' | 'out';
  raw: string;
}

export interface ClientEvents {
  /** The WebSocket opened (the seed guide's `connect`). */
  connect: () => void;
  /** An open WebSocket closed (the seed guide's `disconnect`). */
  disconnect: (info: DisconnectInfo) => void;
  /** A reconnect is scheduled after `delayMs`. */
  reconnecting: (info: ReconnectingInfo) => void;
  /** The client gave up: refused handshake, expired token, tokenProvider failure, ... */
  connect_error: (error: ParleyConnectionError) => void;
  state: (state: ConnectionState) => void;
  /** Every text frame in and out (for logs). */
  frame: (entry: FrameLogEntry) => void;
  /** The send queue was full; the frame was not queued (send() threw). */
  queue_overflow: (frame: Frame) => void;
  /** A joined room's participants or count changed (or a page started or settled); the same object participants(roomId) returns. */
  participants: (state: ParticipantsState) => void;
  /** Every server frame, after its own event. */
  '*': (type: ServerType | string, data: unknown, frame: Frame) => void;
}
export type ClientEventName = keyof ClientEvents;

export type EventName = ClientEventName | ServerType;
export type Listener<E extends string> = E extends ServerType
  ? (data: ServerFrames[E], frame: Frame<E, ServerFrames[E]>) => void
  : E extends ClientEventName
    ? ClientEvents[E]
    : (data: any, frame: Frame) => void;

// ---- options -----------------------------------------------------------------

export interface BackoffOptions {
  /** Ceiling of the first retry's delay (default 500 ms). */
  initialMs?: number;
  /** Cap of the ceiling (default 30000 ms). */
  maxMs?: number;
  /** Growth of the ceiling per attempt (default 2). */
  factor?: number;
}

export interface TimerApi {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface WebSocketLike {
  readonly readyState?: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code?: number; reason?: string; wasClean?: boolean }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ParleyClientOptions {
  /** `wss://{api-domain}/{stage}` or locally `ws://127.0.0.1:3001/local`; the token is appended as `?token=`. */
  url: string;
  /** A JWT. */
  token?: string | null;
  /** Called before every attempt (connect and reconnect) for a fresh token. */
  tokenProvider?: (() => string | Promise<string>) | null;
  /** Reconnect after an open connection closes (default true). */
  reconnect?: boolean;
  backoff?: BackoffOptions;
  /** Ping period while open (default 5 min; never more than 9 min). */
  pingIntervalMs?: number;
  /** Frames kept while disconnected (default 100); beyond it send() throws ParleyError `queue_full`. */
  maxQueue?: number;
  /** A handshake not open after this long counts as failed (default 15000 ms). */
  connectTimeoutMs?: number;
  /** A tokenProvider call not settled after this long counts as failed, and is retried with the backoff (default 10000 ms). */
  tokenTimeoutMs?: number;
  /** A chat message unanswered after this long stops holding its room's next message, and a participants page the next page (default 30000 ms). */
  ackTimeoutMs?: number;
  /**
   * Frames for a room being rejoined wait for its chat_history at most this long after its join was
   * sent (default 10000 ms). At most 20 joins are unanswered at once; a room whose join is queued
   * behind them holds its frames until its own join is sent and answered (or times out).
   */
  joinTimeoutMs?: number;
  /**
   * A join with `since` (every rejoin, and joinRoom with `since`) asks for the history from this
   * long before it (default 30000 ms; 0: from `since` itself; a whole number >= 0): messages from
   * different senders can be stored slightly out of messageId order. The overlap fires no second
   * `message_received`; `chat_history` listeners get the page as sent.
   */
  rejoinOverlapMs?: number;
  /** Retry the first connection too instead of rejecting connect() (default false). */
  retryInitialConnect?: boolean;
  /** Give up after this many reconnect attempts in a row (default Infinity). */
  maxReconnectAttempts?: number;
  /** WebSocket constructor (default `globalThis.WebSocket`). */
  WebSocketImpl?: new (url: string) => WebSocketLike;
  /** Timer functions (default the global ones); for deterministic tests. */
  timers?: Partial<TimerApi>;
  /** Random source in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
  /** Clock in ms (default Date.now); used for the token's `exp`. */
  now?: () => number;
  /** clientMessageId generator (default crypto.randomUUID). */
  generateId?: () => string;
}

// ---- errors --------------------------------------------------------------------

/**
 * `code`: `queue_full` (maxQueue reached), `frame_too_large` (a frame over MAX_CLIENT_FRAME_BYTES;
 * `bytes` and `limit` say by how much), `invalid_room`, `invalid_since` (joinRoom's `since` is not a
 * messageId), `invalid_frame`, `invalid_options`;
 * from loadMoreParticipants: `no_more_participants`, `participants_loading`, `not_joined`, `not_ready`.
 */
export declare class ParleyError extends Error {
  constructor(code: string, message: string, extra?: Record<string, unknown>);
  code: string;
}

/**
 * `code`:
 * - `refused`: the first attempt closed before opening (HTTP 401/403, wrong URL, server down); not retried;
 * - `unauthorized`: a fixed token past its `exp`, or tokenProvider returned no token or an expired one; not retried;
 * - `token_unavailable`: tokenProvider threw, rejected or timed out; retried with the backoff (it reaches
 *   `connect_error` only with `reconnect: false`; otherwise it is the `error` of a `reconnecting` event);
 * - `timeout`: the first attempt did not open within connectTimeoutMs;
 * - `gave_up`: maxReconnectAttempts reached;
 * - `closed`: close() was called while connecting;
 * - `invalid_url`: the WebSocket constructor threw.
 */
export declare class ParleyConnectionError extends ParleyError {
  closeCode?: number;
}

// ---- the client ------------------------------------------------------------------

export declare function decodeJwtPayload(token: string | null | undefined): Record<string, unknown> | null;

/** A copy's or a change's `version`; 0 when absent (a server from before versions). */
export declare function versionOf(m: { version?: number } | null | undefined): number;

/** The frames that change one message. */
export type MessageChangeType = 'message_updated' | 'message_deleted' | 'reaction_update';

/**
 * One room's messages, each kept at its newest version whatever order copies arrive in (PROTOCOL.md
 * "Versions"): a change heard live during a join survives the older copy in the join's chat_history,
 * and crossing reaction_updates keep the later change's counts. useRoom and /ws-test keep theirs in one.
 */
export declare class RoomMessages {
  /** `pendingLimit`: changes to messages not held yet kept for when they arrive (default 200). */
  constructor(options?: { pendingLimit?: number });
  readonly size: number;
  has(messageId: MessageId): boolean;
  get(messageId: MessageId): HistoryMessage | undefined;
  /** Oldest first. */
  list(): HistoryMessage[];
  clear(): void;
  /** A `message_received` or `chat_history` entry; true when the message was not held before. */
  put(message: HistoryMessage): boolean;
  /** A rejoin's `changed` entry: merged as `put` into the message held; true when held (one not held is left out). */
  refresh(message: HistoryMessage): boolean;
  /** An edit, deletion or reaction; true when a held message changed (one not held yet is kept for later). */
  change<T extends MessageChangeType>(type: T, data: ServerFrames[T]): boolean;
}
export declare function backoffDelay(attempt: number, backoff?: BackoffOptions, random?: () => number): number;

export declare class ParleyClient {
  /** `sub` of the current token (decoded, not verified: for display only), or null. */
  readonly userId: string | null;
  constructor(options: ParleyClientOptions);

  readonly url: string;
  token: string | null;
  readonly state: ConnectionState;
  readonly isConnected: boolean;
  /** Reconnect attempts since the socket was last open. */
  readonly reconnectAttempts: number;
  /** The ParleyConnectionError that stopped the client (state `closed`); null once a socket opens again. */
  readonly lastError: ParleyConnectionError | null;
  /** Rooms joined (rejoined after every reconnect). */
  readonly rooms: RoomId[];
  readonly queuedCount: number;
  readonly pendingClientMessageIds: ClientMessageId[];
  /** The newest messageId seen in the room: the `since` of the next rejoin. */
  lastMessageId(roomId: RoomId): MessageId | undefined;
  /** The room's participants and count as known now; the same object until the `participants` event. Empty for a room not joined. */
  participants(roomId: RoomId): ParticipantsState;

  /** Resolves on open; rejects with ParleyConnectionError on refusal (not retried). */
  connect(): Promise<void>;
  /** Close for good (no reconnect). */
  close(code?: number, reason?: string): void;
  /** Alias of close(). */
  disconnect(): void;

  on<E extends EventName>(type: E, fn: Listener<E>): this;
  on(type: string, fn: (...args: any[]) => void): this;
  off<E extends EventName>(type: E, fn?: Listener<E>): this;
  off(type: string, fn?: (...args: any[]) => void): this;
  once<E extends EventName>(type: E, fn: Listener<E>): this;
  once(type: string, fn: (...args: any[]) => void): this;

  /** Send `{type, data}`; returns the clientMessageId for `chat_message`. Throws ParleyError `queue_full`. */
  send(type: 'chat_message', data: ClientFrames['chat_message']): ClientMessageId;
  send<T extends ClientType>(type: T, data?: ClientFrames[T]): void;
  /** Any other type (the server answers `unknown_type`). */
  send<T extends string>(type: T extends ClientType ? never : T, data?: Record<string, unknown>): void;
  /** The seed guide's message format. */
  sendMessage(message: { type: string; data?: Record<string, unknown> }): ClientMessageId | void;
  /** A raw text frame, as is, only while open (for debugging). */
  sendRaw(text: string): boolean;

  joinRoom(roomId: RoomId, options?: { since?: MessageId; limit?: number }): void;
  leaveRoom(roomId: RoomId): void;
  /** Returns the clientMessageId; a re-send after a reconnect keeps it. */
  sendChatMessage(roomId: RoomId, text: string, options?: { clientMessageId?: ClientMessageId }): ClientMessageId;
  setTyping(roomId: RoomId, isTyping: boolean): void;
  markRead(roomId: RoomId, messageId: MessageId): void;
  getHistory(roomId: RoomId, before?: MessageId, options?: { limit?: number }): void;
  editMessage(roomId: RoomId, messageId: MessageId, text: string): void;
  deleteMessage(roomId: RoomId, messageId: MessageId): void;
  react(roomId: RoomId, messageId: MessageId, emoji: string, options?: { remove?: boolean }): void;
  getRooms(options?: { limit?: number; cursor?: string }): void;
  /**
   * Fetch the room's next participants page (get_participants with the last nextCursor). Throws
   * ParleyError `no_more_participants`, `participants_loading`, `not_joined` or `not_ready` (socket down).
   */
  loadMoreParticipants(roomId: RoomId, options?: { limit?: number }): void;
  /** The `message` route; answered with `message_response`. */
  sendEcho(message: JsonValue): void;
  ping(): void;
}

export default ParleyClient;
