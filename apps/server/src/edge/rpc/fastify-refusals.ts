import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { Code, type Refusal, refuse } from "./refusal.js";

/** The Connect code for an HTTP status Fastify or Node answers a client's mistake with. */
const CLIENT_ERROR_CODES: Record<number, Code> = {
  400: Code.InvalidArgument,
  404: Code.Unimplemented,
  405: Code.Unimplemented,
  408: Code.DeadlineExceeded,
  413: Code.ResourceExhausted,
  415: Code.Unimplemented,
  429: Code.ResourceExhausted,
  431: Code.ResourceExhausted,
};

/**
 * The refusal for an error Fastify raised itself (a body parser's 413 or 415, a bad URL's 400):
 * a 4xx keeps its status, with the Connect code of {@link CLIENT_ERROR_CODES} (InvalidArgument
 * for any other 4xx) and Fastify's message; anything else is Internal "internal error".
 */
export function refusalOfFastifyError(error: FastifyError): Refusal {
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return {
      code: CLIENT_ERROR_CODES[status] ?? Code.InvalidArgument,
      message: error.message,
      httpStatus: status,
    };
  }
  return { code: Code.Internal, message: "internal error", httpStatus: 500 };
}

/**
 * Fastify's three error paths answering in the caller's protocol with one Connect error body,
 * instead of Fastify's `{"statusCode":…,"code":"FST_…","error":…}`:
 *
 * - `errorHandler` (app.setErrorHandler): errors from Fastify's own routes and parsers;
 *   see {@link refusalOfFastifyError}. A 5xx is logged with the request's id.
 * - `frameworkErrors`: a URL Fastify cannot route (FST_ERR_BAD_URL: 400, InvalidArgument).
 * - `clientErrorHandler`: nothing. Node's HTTP/1.1 connection-level errors (a header block too
 *   late, too large, or not HTTP) are answered by the connection guard's `clientError` listener
 *   (edge/transport/connection-guard.ts, `answerClientError`), registered before Fastify's, which
 *   also counts the close by its reason; a second answer here would race it on the socket.
 */
export function fastifyRefusals(logger: Logger) {
  const answer = (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const refusal = refusalOfFastifyError(error);
    if (refusal.code === Code.Internal) {
      logger.error({ err: error, requestId: request.id, url: request.url }, "request failed");
    }
    reply.hijack();
    refuse(request.raw, reply.raw, refusal);
  };
  return {
    errorHandler: answer,
    frameworkErrors: answer,
    clientErrorHandler(): void {},
  };
}
