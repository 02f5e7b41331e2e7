import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { Code, connectErrorBody, type Refusal, refuse } from "./refusal.js";

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

/** How long a refused HTTP/1.1 socket may take to read its answer before it is destroyed, ms. */
const CLIENT_ERROR_LINGER_MS = 1_000;

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
 * The answer Node's HTTP/1.1 parser gets for a connection it gives up on before there is a
 * request (Fastify's `clientErrorHandler`; Node's `clientError` event): the request was not
 * received in time (ERR_HTTP_REQUEST_TIMEOUT: 408, DeadlineExceeded), its header block is over
 * the limit (HPE_HEADER_OVERFLOW: 431, ResourceExhausted), or it is not HTTP (400,
 * InvalidArgument). The status line, `connection: close`, and the Connect error body: there is
 * no request to tell a protocol from, so every caller gets Connect's JSON.
 */
export function clientErrorResponse(err: Error & { code?: string }): string {
  let status = 400;
  let message = "malformed HTTP request";
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    status = 408;
    message = "the request was not received in time";
  } else if (err.code === "HPE_HEADER_OVERFLOW") {
    status = 431;
    message = "request headers are larger than the server's limit (MAX_HEADER_BYTES)";
  }
  const body = connectErrorBody(CLIENT_ERROR_CODES[status] as Code, message);
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    "content-type: application/json\r\n" +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    "connection: close\r\n\r\n" +
    body
  );
}

/**
 * Fastify's three error paths answering in the caller's protocol with one Connect error body,
 * instead of Fastify's `{"statusCode":…,"code":"FST_…","error":…}`:
 *
 * - `errorHandler` (app.setErrorHandler): errors from Fastify's own routes and parsers;
 *   see {@link refusalOfFastifyError}. A 5xx is logged with the request's id.
 * - `frameworkErrors`: a URL Fastify cannot route (FST_ERR_BAD_URL: 400, InvalidArgument).
 * - `clientErrorHandler`: the HTTP/1.1 connection-level answers, see {@link clientErrorResponse}.
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
    clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
      if (err.code === "ECONNRESET" || socket.destroyed) return;
      if (!socket.writable) {
        socket.destroy();
        return;
      }
      const linger = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS);
      linger.unref();
      socket.end(clientErrorResponse(err), () => {
        clearTimeout(linger);
        socket.destroy();
      });
    },
  };
}
