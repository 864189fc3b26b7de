// token.js: what the client may know about its JWT without verifying it.
//
// Only `exp` is read, to tell "the server refuses this token" (stop) from
// "the server is down" (retry) when a reconnect closes before it opens.

/** Decode a JWT's payload without verifying it (for `exp` only). */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length < 2) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    let text;
    if (typeof atob === 'function') {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      text = new TextDecoder().decode(bytes);
    } else {
      // eslint-disable-next-line no-undef
      text = Buffer.from(b64, 'base64').toString('utf8');
    }
    const payload = JSON.parse(text);
    return payload && typeof payload === 'object' ? payload : null;
  } catch {
    return null;
  }
}

/** True when the token carries an `exp` at or before `nowMs`. */
export function tokenExpired(token, nowMs) {
  const payload = decodeJwtPayload(token);
  if (!payload || typeof payload.exp !== 'number') return false;
  return payload.exp * 1000 <= nowMs;
}

/** The URL with `?token=` (or `&token=`) appended, as API Gateway's authorizer reads it. */
export function withToken(url, token) {
  if (!token) return url;
  const sep = url.includes('?') ? '&' : '?';
  return `${url}${sep}token=${encodeURIComponent(token)}`;
}
