// emitter.js: named events with isolated listeners.
//
// Why its own module: the connection, the room tracker and the outbox all
// report through one emitter, and a listener that throws must never break
// the loop that called it (a UI bug must not stop reconnects).

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return this;
  }

  /** Remove one listener, or every listener of `type` when `fn` is omitted. */
  off(type, fn) {
    const set = this._listeners.get(type);
    if (!set) return this;
    if (fn === undefined) set.clear();
    else set.delete(fn);
    return this;
  }

  once(type, fn) {
    const wrap = (...args) => {
      this.off(type, wrap);
      fn(...args);
    };
    return this.on(type, wrap);
  }

  emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (typeof console !== 'undefined') console.error(`parley: listener for "${type}" threw`, err);
      }
    }
  }
}
