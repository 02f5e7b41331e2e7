/**
 * A token bucket of stream resets for one HTTP/2 connection: `burst` resets at once, refilled at
 * `ratePerS` per second. `take()` spends one and says whether the connection is still within its
 * budget. The idea is nghttp2's own rapid-reset guard (nghttp2_option_set_stream_reset_rate_limit,
 * CVE-2023-44487), with a budget small enough that the streams it lets through cost the event loop
 * a few tens of milliseconds, where nghttp2's default (1,000 at once) cost about a second.
 */
export class ResetBudget {
  private tokens: number;
  private last: number;

  constructor(
    private readonly burst: number,
    private readonly ratePerS: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Spends one reset; false once the budget is exhausted (the connection should be closed). */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerS);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
