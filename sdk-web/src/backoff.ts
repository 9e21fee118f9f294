/**
 * Reconnection delays: exponential steps from `initialMs` doubling up to `maxMs`, each delay
 * drawn uniformly in [0, step) ("full jitter"). After a server restart, the browsers that
 * lost their stream come back spread over the whole step rather than in waves; a stream that
 * keeps failing waits longer each time up to the cap, and the steps start over only after a
 * stream stayed healthy (see `HEALTHY_AFTER_MS`), so a server that accepts and drops streams
 * at once is not hammered either.
 */
export class Backoff {
  private step: number

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
  ) {
    this.step = initialMs
  }

  /** The next delay in milliseconds. */
  next(): number {
    const step = this.step
    this.step = Math.min(this.step * 2, Math.max(this.maxMs, this.initialMs))
    return Math.floor(Math.random() * step)
  }

  reset(): void {
    this.step = this.initialMs
  }
}

/** A stream that lasted this long resets the backoff (as in the Rust client). */
export const HEALTHY_AFTER_MS = 60_000
