// frames.js: the size limit of a client frame, measured as API Gateway measures it (UTF-8 bytes).

import { ParleyError } from './errors.js';
import { MAX_CLIENT_FRAME_BYTES } from './protocol.js';

const encoder = typeof TextEncoder === 'function' ? new TextEncoder() : null;

/** The UTF-8 length of a string (a frame's size on the wire). */
export function utf8Length(text) {
  if (encoder) return encoder.encode(text).length;
  // eslint-disable-next-line no-undef
  return Buffer.byteLength(text, 'utf8');
}

/**
 * Throw ParleyError `frame_too_large` for a frame over 32 KB. API Gateway closes a connection
 * that sends one (code 1009), losing whatever else was in flight; refusing it here keeps the
 * connection and tells the app why.
 */
export function checkFrameSize(raw, type) {
  const bytes = utf8Length(raw);
  if (bytes > MAX_CLIENT_FRAME_BYTES) {
    throw new ParleyError(
      'frame_too_large',
      `not sent: this ${type} frame is ${bytes} bytes of UTF-8, over the ${MAX_CLIENT_FRAME_BYTES}-byte limit for one client frame (API Gateway would close the connection); send a shorter message`,
      { bytes, limit: MAX_CLIENT_FRAME_BYTES },
    );
  }
}
