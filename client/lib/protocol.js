// protocol.js: the names and limits of the wire contract (docs/PROTOCOL.md), in one place.

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

/** The largest frame a client may send: API Gateway closes the connection (1009) on a bigger one. */
export const MAX_CLIENT_FRAME_BYTES = 32 * 1024;
