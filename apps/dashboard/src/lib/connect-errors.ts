import { Code, ConnectError } from "@connectrpc/connect";

/** A failed call as the page shows it: the Connect code name and the server's message. */
export interface CallError {
  /** The Connect protocol's code string, e.g. `invalid_argument` (Connect spec, "Error Codes"). */
  code: string;
  /** The error message without the `[code]` prefix. */
  message: string;
}

/** The Connect protocol's name for a code: `Code.InvalidArgument` is `invalid_argument`. */
export function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c : `_${c}`)).toLowerCase();
}

/** Any thrown value as a CallError (non-Connect errors become `unknown`). */
export function toCallError(err: unknown): CallError {
  const connectError = ConnectError.from(err);
  return { code: codeName(connectError.code), message: connectError.rawMessage };
}

/** "invalid_argument: content is required", the one line every failure is shown as. */
export function formatCallError(err: unknown): string {
  const { code, message } = toCallError(err);
  return message === "" ? code : `${code}: ${message}`;
}

/**
 * The error a caller should see: a request that never reached the server (fetch's TypeError,
 * "Failed to fetch" in Chromium, "NetworkError when attempting to fetch resource." in Firefox,
 * "Load failed" in Safari, "network error" for a response body cut off), which connect-web
 * reports as `unknown`, becomes `unavailable`, the code for "try again later" (Connect spec,
 * "Error Codes"). Every other error is returned as a ConnectError, unchanged.
 */
export function toNetworkError(err: unknown): ConnectError {
  const error = ConnectError.from(err);
  if (error.code !== Code.Unknown) return error;
  const cause = err instanceof TypeError ? err : error.cause;
  if (cause instanceof TypeError || NETWORK_MESSAGES.test(error.rawMessage)) {
    return new ConnectError(error.rawMessage, Code.Unavailable, error.metadata, undefined, cause);
  }
  return error;
}

const NETWORK_MESSAGES =
  /^(Failed to fetch|NetworkError when attempting to fetch resource\.?|Load failed|network error|fetch failed)$/i;

/** True when the call was cancelled by this page (navigation, protocol switch, pause). */
export function isOwnCancel(err: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true && ConnectError.from(err).code === Code.Canceled;
}
