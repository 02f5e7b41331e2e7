import type { FastifyReply, FastifyRequest } from "fastify";

/**
 * Answers a request for an unknown path in the caller's protocol, so that an unknown method is
 * Unimplemented everywhere: gRPC and gRPC-Web get a trailers-only response with grpc-status 12
 * (gRPC over HTTP/2 spec, "Responses"); Connect gets HTTP 404 with a Connect error body
 * (Connect protocol spec, "Error Codes": unimplemented ↔ 404); anything else a plain 404.
 */
export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  const contentType = String(req.headers["content-type"] ?? "");
  const message = `unknown method ${req.method} ${req.url.split("?")[0]}`;
  if (contentType.startsWith("application/grpc")) {
    void reply
      .code(200)
      .header("content-type", contentType.split(";")[0])
      .header("grpc-status", "12")
      .header("grpc-message", encodeURIComponent(message))
      .send();
    return;
  }
  void reply.code(404).type("application/json").send({ code: "unimplemented", message });
}
