import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse, type Transport } from "@connectrpc/connect";

/** Codes that say the node itself is gone or broken, not that the request was wrong. */
const NODE_FAILURES = new Set<Code>([Code.Unavailable, Code.Unknown, Code.Internal, Code.Aborted]);

/**
 * A transport over several Switchboard nodes (for clients without a load balancer in front):
 * every call goes to the current node, and a call that fails because the node is gone
 * (Unavailable, Unknown, Internal, Aborted, also mid-stream) moves later calls to the next node,
 * round-robin. It does not retry the failed call itself: pair it with `subscribeResumable`, which
 * resumes from its last offset on whichever node answers next.
 *
 * @throws TypeError when `transports` is empty.
 */
export function createFailoverTransport(transports: readonly Transport[]): Transport {
  if (transports.length === 0) throw new TypeError("createFailoverTransport needs a transport");
  let current = 0;
  const pick = () => {
    const index = current;
    return { transport: transports[index % transports.length] as Transport, index };
  };
  // Only the first failure of a node moves on; calls already in flight to it do not skip past
  // the next node.
  const failed = (index: number, err: unknown) => {
    if (NODE_FAILURES.has(ConnectError.from(err).code) && current === index) current = index + 1;
  };
  return {
    async unary(...args) {
      const { transport, index } = pick();
      try {
        return await transport.unary(...args);
      } catch (err) {
        failed(index, err);
        throw err;
      }
    },
    async stream<I extends DescMessage, O extends DescMessage>(
      ...args: Parameters<Transport["stream"]>
    ): Promise<StreamResponse<I, O>> {
      const { transport, index } = pick();
      let response: StreamResponse<I, O>;
      try {
        response = (await transport.stream(...args)) as StreamResponse<I, O>;
      } catch (err) {
        failed(index, err);
        throw err;
      }
      const messages = response.message;
      return {
        ...response,
        message: (async function* () {
          try {
            yield* messages;
          } catch (err) {
            failed(index, err);
            throw err;
          }
        })(),
      };
    },
  };
}
