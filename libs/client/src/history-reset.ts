import { Code, ConnectError } from "@connectrpc/connect";
import { HistoryResetSchema } from "@switchboard/proto/gen/chat/chat_pb";

/**
 * A room's log was reset under a client: the epoch its position was in is no longer the room's
 * (the store lost its data, or a failover reused offsets), so its offsets now name other
 * messages. Reported by {@link subscribeResumable} and {@link createChatSession} before they go
 * on (or not: see {@link AfterReset}); they never continue silently.
 */
export interface HistoryReset {
  room: string;
  /** The epoch the client was in. */
  staleEpoch: string;
  /** The last offset the client had in it (0 for none). */
  staleOffset: bigint;
  /** The room's current epoch ("" when the room has no log now). */
  epoch: string;
  /** The oldest offset of the current log (0 when it has none). */
  firstOffset: bigint;
  /** The newest offset of the current log (0 when it has none). */
  lastOffset: bigint;
  /**
   * The server's refusal: FailedPrecondition (the epoch is gone), or OutOfRange (the position is
   * beyond the end of the log in the same epoch: offsets went back without the server noticing).
   */
  error: ConnectError;
}

/**
 * What to do after a {@link HistoryReset}: `"start"` follows the new log from its first message
 * (every message of it is delivered, offsets starting again), `"end"` from its last (only
 * messages stored from now on), `"stop"` ends with the refusal (a ConnectError with
 * Code.FailedPrecondition or Code.OutOfRange).
 */
export type AfterReset = "start" | "end" | "stop";

/**
 * Where the room's log stands now, from a refusal's chat.HistoryReset error detail (attached to
 * FailedPrecondition and OutOfRange by the server; read from a Connect error body or gRPC's
 * `grpc-status-details-bin` trailer by connect-es); undefined for any other error.
 */
export function historyResetOf(
  err: unknown,
): { room: string; epoch: string; firstOffset: bigint; lastOffset: bigint } | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  if (err.code !== Code.FailedPrecondition && err.code !== Code.OutOfRange) return undefined;
  const [detail] = err.findDetails(HistoryResetSchema);
  if (detail === undefined) return undefined;
  return {
    room: detail.room,
    epoch: detail.epoch,
    firstOffset: detail.firstOffset,
    lastOffset: detail.lastOffset,
  };
}

/**
 * The reset a refusal reports for a client at (`epoch`, `offset`), or undefined when it reports
 * none: FailedPrecondition with the detail always; OutOfRange with the detail only when the
 * client named an epoch (its offset came from the server in that epoch, so being beyond the end
 * means the log went back; without an epoch it is the caller's own offset that is wrong).
 */
export function resetFromRefusal(
  err: ConnectError,
  room: string,
  epoch: string,
  offset: bigint,
): HistoryReset | undefined {
  const now = historyResetOf(err);
  if (now === undefined) return undefined;
  if (err.code === Code.OutOfRange && epoch === "") return undefined;
  return {
    room: now.room === "" ? room : now.room,
    staleEpoch: epoch,
    staleOffset: offset,
    epoch: now.epoch,
    firstOffset: now.firstOffset,
    lastOffset: now.lastOffset,
    error: err,
  };
}

/** The offset to resume from after a reset, per {@link AfterReset} ("start" or "end"). */
export function resumeOffsetAfter(reset: HistoryReset, action: "start" | "end"): bigint {
  if (action === "end") return reset.lastOffset;
  return reset.firstOffset > 0n ? reset.firstOffset - 1n : 0n;
}
