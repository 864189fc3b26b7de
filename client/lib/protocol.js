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
  'message_updated',
  'message_deleted',
  'reaction_update',
  'rooms_list',
  'presence_update',
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
  'edit_message',
  'delete_message',
  'react',
  'get_rooms',
  'get_participants',
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
  'participants',
  '*',
]);

export const ROOM_ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/** The largest frame a client may send: API Gateway closes the connection (1009) on a bigger one. */
export const MAX_CLIENT_FRAME_BYTES = 32 * 1024;
/**
 * The direct-message room of two users: `dm:<a>:<b>` with the ids in sorting
 * order (code-unit order, as the server sorts the room-id alphabet), so both
 * users name the same room. Only those two may read or write it.
 */
export function dmRoomId(userA, userB) {
  if (typeof userA !== 'string' || typeof userB !== 'string' || !userA || !userB || userA === userB) {
    throw new TypeError('dmRoomId needs two different, non-empty user ids');
  }
  if (userA.includes(':') || userB.includes(':')) throw new TypeError('user ids containing ":" cannot have a DM room');
  const [first, second] = userA < userB ? [userA, userB] : [userB, userA];
  return `dm:${first}:${second}`;
}
