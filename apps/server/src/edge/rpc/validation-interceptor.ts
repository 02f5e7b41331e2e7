import type { Message } from "@bufbuild/protobuf";
import {
  createValidator,
  ValidationError as RuleViolations,
  type Validator,
  violationsToProto,
} from "@bufbuild/protovalidate";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { ValidationError } from "../../domain/errors.js";
import type { MessageLimits } from "../../domain/validation.js";
import { eachMessage } from "../../policy/each-message.js";
import { type MethodPolicy, policyOf } from "../../policy/method-policy.js";
import { toConnectError } from "./errors.js";

/**
 * Request validation, two interceptors in this order, after authentication (so `user` is already
 * the token's) and before the handler, on every protocol and for every request message (a unary
 * or server-streaming call's one, each of a client or bidi stream as it arrives):
 *
 * 1. The schema's rules: connect-es's standard interceptor (`@connectrpc/validate`) with
 *    protovalidate (`@bufbuild/protovalidate`) checks the `buf.validate` rules written in
 *    proto/chat/*.proto. A request that breaks one fails with InvalidArgument, the first violation
 *    as the message ("room: does not match regex pattern `…` [string.pattern]") and a
 *    `buf.validate.Violations` error detail listing all of them (field path, rule id, message).
 * 2. The limits that are settings (MAX_USER_BYTES, MAX_CONTENT_BYTES): the method's row
 *    (policy/method-policy.ts, `limits`), from domain/validation.ts; InvalidArgument naming the
 *    field ("content is 5000 bytes, over MAX_CONTENT_BYTES (4096)"), no detail.
 *
 * In a client or bidi stream (UploadMessages, Chat) either error's message starts with the bad
 * message's index, "message N: " (from 0), as chat.proto documents; the earlier messages have
 * been handled.
 */
export function createValidationInterceptors(limits: MessageLimits): Interceptor[] {
  return [
    createValidateInterceptor({ validator: createRequestValidator() }),
    createLimitsInterceptor(limits),
  ];
}

/**
 * protovalidate's validator for the contract's requests. The schema's patterns (its own, fixed
 * at build time: a room name, a user name) are matched with the platform `RegExp` (`u` flag)
 * instead of the default RE2 engine: measured, RE2 costs about 4 µs per pattern per request,
 * RegExp about 0.1 µs. RE2's guarantee (linear time for a pattern one has never seen) is not
 * needed for these, which have no nested repetition; protovalidate makes the same choice for
 * its own fixed formats (`fixedPattern` in its native/string.ts).
 * `validation-interceptor.test.ts` checks that both engines agree on every pattern of the schema.
 */
export function createRequestValidator(): Validator {
  const compiled = new Map<string, RegExp>();
  return createValidator({
    regexMatch(pattern, text) {
      let re = compiled.get(pattern);
      if (re === undefined) {
        re = new RegExp(pattern, "u");
        compiled.set(pattern, re);
      }
      return re.test(text);
    },
  });
}

function createLimitsInterceptor(limits: MessageLimits): Interceptor {
  return (next) => async (req) => {
    const policy = policyOf(req.method);
    if (!req.stream) {
      check(policy, req.message, limits, "");
      return next(req);
    }
    const indexed = policy?.requestStream === true;
    // Messages read so far: the index of the one whose rules (checked upstream, as it is read)
    // failed.
    let read = 0;
    return next({
      ...req,
      message: eachMessage(req.message, {
        each: (message, index) => {
          read = index + 1;
          check(policy, message, limits, indexed ? `message ${index}: ` : "");
          return message;
        },
        error: (err) => (indexed ? inMessage(err, read) : err),
      }),
    });
  };
}

function check(
  policy: MethodPolicy | undefined,
  message: Message,
  limits: MessageLimits,
  prefix: string,
) {
  if (policy?.limits === undefined) return;
  try {
    policy.limits(message, limits);
  } catch (err) {
    throw err instanceof ValidationError ? toConnectError(err, prefix) : err;
  }
}

/** A schema-rule refusal of message `index` of a request stream, named so; other errors as they are. */
function inMessage(err: unknown, index: number): unknown {
  if (!(err instanceof ConnectError) || !(err.cause instanceof RuleViolations)) return err;
  const [value, desc] = violationsToProto(err.cause.violations);
  return new ConnectError(
    `message ${index}: ${err.rawMessage}`,
    err.code,
    err.metadata,
    [{ desc, value }],
    err.cause,
  );
}
