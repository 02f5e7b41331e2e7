import type { Interceptor } from "@connectrpc/connect";
import type { MessageLimits } from "../../domain/validation.js";
import { createErrorInterceptor } from "./errors.js";
import { createUndecodableInterceptor } from "./undecodable.js";
import { createValidationInterceptors } from "./validation-interceptor.js";

/**
 * The server's interceptor chain, outermost first, for connect-es's handlers and Switchboard's
 * own (edge/rpc/subscribe-handler.ts, edge/rpc/unary-handler.ts) alike: an undecodable streaming
 * request message is InvalidArgument where it is read (first, so it wraps the parsed stream
 * itself); then the operational interceptors (`ops`: metrics and the access log, refusal during
 * shutdown, authentication, per-identity limits); validation after authentication has set
 * `user` from the token (the schema's protovalidate rules, then the limits that are settings:
 * edge/rpc/validation-interceptor.ts); the error mapper innermost, so that the access log and metrics see the
 * code the caller gets (edge/rpc/errors.ts). Built here so that a test can run exactly this
 * chain (edge/rpc/batched-stream.test.ts).
 */
export function createInterceptorChain(
  ops: { interceptors: readonly Interceptor[] },
  limits: MessageLimits,
): Interceptor[] {
  return [
    createUndecodableInterceptor(),
    ...ops.interceptors,
    ...createValidationInterceptors(limits),
    createErrorInterceptor(),
  ];
}
