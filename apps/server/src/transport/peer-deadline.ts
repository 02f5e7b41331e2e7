/**
 * What a {@link PeerDeadline} waits for from one peer: a connection's first bytes, its TLS
 * handshake, an HTTP/1.1 header block, a PING's answer, a new stream.
 */
export interface PeerWait {
  /** Whether the peer has done what the deadline waits for. */
  met(): boolean;
  /**
   * Bytes the server has read from the peer so far (the TCP socket's `bytesRead`); bytes read
   * in the poll after the timer fired were waiting for the server, not the other way round.
   * Absent: only {@link met} and the timer's lateness decide.
   */
  bytesRead?(): number;
  /** The peer missed the deadline: close it (or answer it) the way the deadline's owner does. */
  expire(): void;
}

/**
 * A deadline's timer that runs this much later than it was due says the server was behind (its
 * event loop blocked, by a burst of connections or a long GC pause), not the peer, ms.
 */
export const LATE_TIMER_MS = 1_000;

/**
 * A deadline on a peer that measures the peer, not the server's event loop.
 *
 * A timer alone cannot tell a silent peer from a busy server. libuv runs the expired timers at
 * the end of a loop iteration, before the next poll for I/O; when the loop falls behind, a
 * deadline's timer runs while the peer's bytes, arrived long ago, wait unread in the kernel's
 * socket buffer (or in Node's), and the peer would be closed as silent for the server's lag.
 * (Seen under a burst of 1,000 connections: hundreds closed at their first-byte deadline with
 * their preface and requests sent.) So the timer never decides alone:
 *
 * 1. When the timer fires, the verdict waits for the loop's next poll for I/O (`setImmediate` runs
 *    in the check phase, after the poll phase): whatever the peer sent by then is read first.
 * 2. Then, if the peer has done what the deadline waits for ({@link PeerWait.met}), nothing
 *    happens.
 * 3. If bytes of the peer were read in that poll (they were waiting for the server), or the timer
 *    ran {@link LATE_TIMER_MS} or more after it was due, the server was behind: the peer gets a
 *    new period of the deadline instead of the close. Each new period needs such evidence again,
 *    so a peer that stays silent while the server keeps up is closed one period later.
 * 4. Otherwise the peer missed it: {@link PeerWait.expire}.
 *
 * The timer is unref'd: a deadline does not keep the process alive. (The verdict's immediate is
 * not: an unref'd immediate lets the poll phase block until other I/O comes.)
 */
export class PeerDeadline {
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private cleared = false;

  private constructor(
    private readonly ms: number,
    private readonly wait: PeerWait,
  ) {}

  /** A deadline `ms` from now. */
  static start(ms: number, wait: PeerWait): PeerDeadline {
    const deadline = new PeerDeadline(ms, wait);
    deadline.arm();
    return deadline;
  }

  /**
   * A deadline that has already passed by another timer's account (node:http's header check):
   * judged now, as in steps 1–4, with `ms` as the length of a new period.
   */
  static passed(ms: number, wait: PeerWait, lateMs = 0): PeerDeadline {
    const deadline = new PeerDeadline(ms, wait);
    deadline.judge(lateMs);
    return deadline;
  }

  /** Stops the deadline (the peer did what it waited for, or the connection is gone). */
  clear(): void {
    this.cleared = true;
    clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  private arm(): void {
    const due = performance.now() + this.ms;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.judge(performance.now() - due);
    }, this.ms);
    this.timer.unref();
  }

  private judge(lateMs: number): void {
    if (this.cleared || this.wait.met()) return;
    const before = this.wait.bytesRead?.() ?? 0;
    // Two immediates: the second runs after a whole poll phase wherever this was called from (an
    // immediate queued in the poll phase would run right after it, before the next one).
    this.immediate = setImmediate(() => {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        if (this.cleared || this.wait.met()) return;
        const waiting = (this.wait.bytesRead?.() ?? 0) > before;
        if (waiting || lateMs >= LATE_TIMER_MS) this.arm();
        else this.wait.expire();
      });
    });
  }
}
