// errors.js: the two error classes every part of the client throws or emits.

export class ParleyError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = 'ParleyError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** A failure of the connection itself: `connect()` rejects with it and `connect_error` carries it. */
export class ParleyConnectionError extends ParleyError {
  constructor(code, message, extra) {
    super(code, message, extra);
    this.name = 'ParleyConnectionError';
  }
}
