import type { Message } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { ValidationError } from "../../domain/errors.js";
import type { MessageLimits } from "../../domain/validation.js";
import { eachMessage } from "../../policy/each-message.js";
import { type MethodPolicy, policyOf } from "../../policy/method-policy.js";
import { toConnectError } from "./errors.js";

/**
 * Validation in one place: every request message of a method whose row has rules
 * (policy/method-policy.ts, `validate`) is checked here, after authentication (so `user` is
 * already the token's identity) and before the handler runs. A bad one fails with
 * InvalidArgument naming the field; in a client or bidi stream (UploadMessages, Chat) with the
 * message's index, "message N: …" (from 0), when that message arrives, the earlier ones having
 * been handled. The rules are the domain's (domain/validation.ts; Rooms re-checks what it
 * stores).
 */
export function createValidationInterceptor(limits: MessageLimits): Interceptor {
  return (next) => async (req) => {
    const policy = policyOf(req.method);
    if (policy?.validate === undefined) return next(req);
    if (!req.stream) {
      check(policy, req.message, limits, "");
      return next(req);
    }
    const indexed = policy.requestStream;
    return next({
      ...req,
      message: eachMessage(req.message, {
        each: (message, index) => {
          check(policy, message, limits, indexed ? `message ${index}: ` : "");
          return message;
        },
      }),
    });
  };
}

function check(policy: MethodPolicy, message: Message, limits: MessageLimits, prefix: string) {
  try {
    policy.validate?.(message, limits);
  } catch (err) {
    throw err instanceof ValidationError ? toConnectError(err, prefix) : err;
  }
}
