// Test doubles for the client: a fake WebSocket and a manual clock.

export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + Math.max(0, ms || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Run every timer due within `ms`, in time order. */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) if (t.at <= end && (!next || t.at < next[1].at || (t.at === next[1].at && id < next[0]))) next = [id, t];
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }

  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
}

export function makeFakeWebSocket() {
  class FakeWebSocket {
    static instances = [];
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      this.closedByClient = null;
      FakeWebSocket.instances.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      this.sent.push(data);
    }

    close(code, reason) {
      this.closedByClient = { code, reason };
      this.readyState = 3;
    }

    // ---- driven by the test ----
    open() {
      this.readyState = 1;
      this.onopen && this.onopen({});
    }

    receive(type, data) {
      this.onmessage && this.onmessage({ data: JSON.stringify({ type, data }) });
    }

    receiveRaw(text) {
      this.onmessage && this.onmessage({ data: text });
    }

    /** The server closes an open connection. */
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason, wasClean: code !== 1006 });
    }

    /** A refused handshake as a browser sees it: error, then close 1006, no open. */
    refuse() {
      this.readyState = 3;
      this.onerror && this.onerror({});
      this.onclose && this.onclose({ code: 1006, reason: '', wasClean: false });
    }

    frames() {
      return this.sent.map((s) => JSON.parse(s));
    }
  }
  return FakeWebSocket;
}

/** A JWT-shaped token (unsigned; the client only reads `exp`). */
export function fakeJwt(payload) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}.sig`;
}

export const tick = () => new Promise((r) => setImmediate(r));
