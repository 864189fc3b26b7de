// backoff.js: the delay before each reconnect attempt.

/**
 * Full-jitter backoff: a uniform random delay in [0, min(maxMs, initialMs * factor^attempt)).
 * `attempt` counts from 0. Full jitter spreads the clients of a restarted
 * gateway over the whole window instead of having them return together.
 */
export function backoffDelay(attempt, { initialMs = 500, maxMs = 30000, factor = 2 } = {}, random = Math.random) {
  const ceiling = Math.min(maxMs, initialMs * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}

export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 30000, factor: 2 });
