// Type declarations for parley-react.js (React >= 18 is a peer dependency).
import type { ReactNode, ReactElement } from 'react';
import type {
  ParleyClient,
  ParleyClientOptions,
  ParleyConnectionError,
  ConnectionState,
  ClientMessageId,
  EventName,
  Listener,
  MessageId,
  HistoryMessage,
  Participant,
  ParticipantsState,
  RoomId,
  RoomSummary,
} from '../parley-client.js';

export { ParleyClient } from '../parley-client.js';

export interface WebSocketProviderProps {
  /** `ws://127.0.0.1:3001/local` locally, `wss://{api-domain}/{stage}` deployed. */
  url?: string;
  token?: string | null;
  tokenProvider?: () => string | Promise<string>;
  /** Any other ParleyClientOptions (backoff, pingIntervalMs, maxQueue, ...). */
  options?: Omit<ParleyClientOptions, 'url' | 'token' | 'tokenProvider'>;
  /** Share an existing client instead (the provider then never closes it). */
  client?: ParleyClient;
  /** Connect on mount (default true). */
  autoConnect?: boolean;
  children?: ReactNode;
}

export declare function WebSocketProvider(props: WebSocketProviderProps): ReactElement;

export interface WebSocketContextValue {
  isConnected: boolean;
  state: ConnectionState;
  reconnectAttempts: number;
  /** The last connect_error (refused handshake, expired token, ...), cleared on connect. */
  error: ParleyConnectionError | null;
  connect(): Promise<void>;
  disconnect(): void;
  /** The seed guide's format; returns the clientMessageId for `chat_message`. */
  sendMessage(message: { type: string; data?: Record<string, unknown> }): ClientMessageId | void;
  /** Returns a function that removes the listener. */
  on<E extends EventName>(type: E, fn: Listener<E>): () => void;
  on(type: string, fn: (...args: any[]) => void): () => void;
  off<E extends EventName>(type: E, fn: Listener<E>): void;
  off(type: string, fn: (...args: any[]) => void): void;
  client: ParleyClient;
}

export declare function useWebSocket(): WebSocketContextValue;

/** Listen to one event type while mounted (memoise `handler` with useCallback). */
export declare function useParleyEvent<E extends EventName>(type: E, handler: Listener<E>): void;

export interface RoomState {
  /** Deduplicated by messageId, oldest first; edits, deletions (tombstones) and reactions applied. */
  messages: HistoryMessage[];
  /** The participants the client has loaded (userId order): the first page, joins and leaves applied; useParticipants pages on. */
  participants: readonly Participant[];
  /** The room's participants as the server counts them ("N online"), right in rooms too large to list. */
  participantCount: number;
  /** userIds currently typing (other users; expire after 6 s without an update). */
  typingUsers: string[];
  /** Older history exists (from the last chat_history page at the oldest end). */
  hasMore: boolean;
  /** The room's chat_history arrived on the current connection. */
  joined: boolean;
  /** Messages from others after the read cursor: the server's count at join, then kept up locally. */
  unreadCount: number;
  /** More than 100 unread at join (unreadCount stays 100 until markRead). */
  unreadCapped: boolean;
}

export interface UseRoomResult extends RoomState {
  /** Send a chat message; returns its clientMessageId. */
  send(text: string): ClientMessageId;
  setTyping(isTyping: boolean): void;
  markRead(messageId: MessageId): void;
  /** Ask for the page before the oldest message held. */
  loadOlder(limit?: number): void;
  /** Edit one's own message. */
  edit(messageId: MessageId, text: string): void;
  /** Delete a message (one's own, or anyone's with `moderate`). */
  remove(messageId: MessageId): void;
  /** Add (or with `{remove: true}` remove) one emoji reaction. */
  react(messageId: MessageId, emoji: string, options?: { remove?: boolean }): void;
}

export interface UseRoomsResult {
  /** The user's rooms, newest activity first. */
  rooms: RoomSummary[];
  /** Pass to loadMore: null when there is no next page. */
  nextCursor: string | null;
  loading: boolean;
  /** Ask again from the first page (done on mount and every reconnect). */
  refresh(): void;
  /** Append the next page. */
  loadMore(): void;
}

export declare function useRooms(options?: { limit?: number }): UseRoomsResult;

export interface UseParticipantsResult extends Omit<ParticipantsState, 'roomId'> {
  /** Fetch the next page; does nothing when hasMore is false or a page is on its way. */
  loadMore(options?: { limit?: number }): void;
}

/** A joined room's participants and count, kept by the client (it does not join the room: useRoom does). */
export declare function useParticipants(roomId: RoomId | null | undefined): UseParticipantsResult;

export declare function useRoom(roomId: RoomId | null | undefined): UseRoomResult;

export declare class RoomStore {
  constructor(client: ParleyClient, roomId: RoomId, options?: { typingExpiryMs?: number });
  readonly roomId: RoomId;
  snapshot: RoomState;
  subscribe(fn: () => void): () => void;
  getSnapshot(): RoomState;
  start(): void;
  stop(): void;
}
