/** A socket's remote address as `ip:port` (`[ip6]:port`), for the access log and limits. */
export function peerOf(socket: {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
}): string {
  const { remoteAddress, remotePort } = socket;
  if (remoteAddress === undefined) return "unknown";
  const host = remoteAddress.includes(":") ? `[${remoteAddress}]` : remoteAddress;
  return remotePort === undefined ? host : `${host}:${remotePort}`;
}

/** A socket, or the wrapper of one (node:http2's JSStreamSocket keeps the real one in `stream`). */
export interface PeerSocket {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  stream?: PeerSocket | undefined;
}

/**
 * The peer address of an HTTP/1.1 or HTTP/2 request. A session on a socket without a native
 * handle runs on a JSStreamSocket wrapper, which has no address of its own: the address is the
 * wrapped socket's.
 */
export function peerOfRequest(raw: {
  socket?: PeerSocket | null;
  stream?: { session?: { socket?: PeerSocket } | undefined };
}): string {
  const session = raw.stream?.session?.socket;
  const socket = session ?? raw.socket ?? {};
  return peerOf(socket.remoteAddress === undefined && socket.stream ? socket.stream : socket);
}
