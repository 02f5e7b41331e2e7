import type { Interceptor } from "@connectrpc/connect";
import { ValidationError } from "../domain/errors.js";
import {
  type MessageLimits,
  validateDraft,
  validateRoom,
  validateUser,
} from "../domain/validation.js";
import { toConnectError } from "./errors.js";

/** History page size bounds (GetHistory's `limit`; 0 means the default page). */
export const MAX_HISTORY_LIMIT = 500;
/** Largest StreamLogs backlog, lines. */
export const MAX_LOG_BACKLOG = 1000;
/** Largest StreamMetrics interval, seconds. */
const MAX_METRICS_INTERVAL_S = 3600;

type Fields = Record<string, unknown>;

/** A request's rules, by `service/method`: throws ValidationError or ConnectError. */
const RULES: Record<string, (m: Fields, limits: MessageLimits) => void> = {
  "chat.ChatService/SendMessage": (m, limits) => validateDraft(m as Draft, limits),
  "chat.ChatService/SubscribeMessages": (m, limits) => {
    validateRoom(m.room as string);
    validateUser(m.user as string, limits);
    validateOffset(m.sinceOffset, "since_offset");
  },
  "chat.ChatService/UploadMessages": (m, limits) => validateDraft(m as Draft, limits),
  "chat.ChatService/Chat": (m, limits) => validateDraft(m as Draft, limits),
  "chat.ChatService/StreamMetrics": (m) => {
    const interval = m.intervalSeconds as number;
    if (interval < 0 || interval > MAX_METRICS_INTERVAL_S) {
      throw new ValidationError(
        "interval_seconds",
        `interval_seconds must be from 0 to ${MAX_METRICS_INTERVAL_S}`,
      );
    }
  },
  "chat.ChatService/GetHistory": (m) => {
    validateRoom(m.room as string);
    if ((m.limit as number) > MAX_HISTORY_LIMIT) {
      throw new ValidationError("limit", `limit must be from 1 to ${MAX_HISTORY_LIMIT}`);
    }
    validateOffset(m.afterOffset, "after_offset");
    validateOffset(m.beforeOffset, "before_offset");
  },
  "chat.ChatService/ListMembers": (m) => validateRoom(m.room as string),
  "chat.LogService/StreamLogs": (m) => {
    if ((m.backlog as number) > MAX_LOG_BACKLOG) {
      throw new ValidationError("backlog", `backlog must be from 0 to ${MAX_LOG_BACKLOG}`);
    }
  },
};

type Draft = { room: string; user: string; content: string; clientMessageId: string };

/** Offsets are uint64 on the wire and safe integers inside. */
function validateOffset(value: unknown, field: string): void {
  if (typeof value === "bigint" && value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ValidationError(field, `${field} is larger than any offset`);
  }
}

/**
 * Validation in one place: every request message of chat.ChatService and chat.LogService is
 * checked here, after authentication (so `user` is already the token's identity) and before the
 * handler runs. A bad one fails with InvalidArgument naming the field; in a client or bidi
 * stream (UploadMessages, Chat) with the message's index, "message N: …" (from 0), when that
 * message arrives, the earlier ones having been handled. The rules are the domain's
 * (domain/validation.ts; Rooms re-checks what it stores).
 */
export function createValidationInterceptor(limits: MessageLimits): Interceptor {
  return (next) => async (req) => {
    const rule = RULES[`${req.service.typeName}/${req.method.name}`];
    if (rule === undefined) return next(req);
    if (!req.stream) {
      check(rule, req.message as unknown as Fields, limits, "");
      return next(req);
    }
    const kind = req.method.methodKind;
    const indexed = kind === "client_streaming" || kind === "bidi_streaming";
    return next({ ...req, message: checked(req.message, rule, limits, indexed) });
  };
}

function check(
  rule: (m: Fields, limits: MessageLimits) => void,
  message: Fields,
  limits: MessageLimits,
  prefix: string,
): void {
  try {
    rule(message, limits);
  } catch (err) {
    throw err instanceof ValidationError ? toConnectError(err, prefix) : err;
  }
}

async function* checked<T>(
  source: AsyncIterable<T>,
  rule: (m: Fields, limits: MessageLimits) => void,
  limits: MessageLimits,
  indexed: boolean,
): AsyncIterable<T> {
  let index = 0;
  for await (const message of source) {
    check(rule, message as unknown as Fields, limits, indexed ? `message ${index}: ` : "");
    index++;
    yield message;
  }
}
