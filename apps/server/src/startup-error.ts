import { join } from "node:path";
import type { Config, StoreConfig } from "./config.js";
import { StoreUnavailableError } from "./store/message-store.js";

/** What a system error code means, in words. */
const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is a file, not a directory",
  EISDIR: "is a directory",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EEXIST: "a file is in the way",
};

interface SystemError {
  code?: unknown;
  syscall?: unknown;
  path?: unknown;
  message?: unknown;
}

/** A Redis URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "";
    return parsed.toString();
  } catch {
    return "(invalid URL)";
  }
}

/** Where the store keeps its data, for the start-up log: a file, a Redis URL, or memory. */
export function storeLocation(store: StoreConfig): string {
  if (store.kind === "sqlite") return join(store.dataDir, "switchboard.db");
  if (store.kind === "redis") return redactUrl(store.url);
  if (store.kind === "redis-cluster") return `Redis Cluster ${store.nodes.join(",")}`;
  return "memory (lost at exit)";
}

/**
 * One line, naming the setting to change, for an error that stopped the server from starting:
 * the port in use or not allowed (PORT), an address that is not this machine's (HOST), a data
 * directory or database that cannot be used (DATA_DIR), unreadable TLS or key files (TLS_CERT,
 * TLS_KEY, AUTH_JWKS_FILE), Redis unreachable (STORE). Undefined for anything else (a bug: its
 * stack is worth showing).
 */
export function startupErrorMessage(
  err: unknown,
  config: Pick<Config, "port" | "host" | "store" | "tlsCert" | "tlsKey" | "authJwksFile">,
): string | undefined {
  const { store } = config;
  if (err instanceof StoreUnavailableError && store.kind === "redis") {
    const reason = err.message.replace(/^redis unavailable: /, "");
    return `cannot reach Redis at ${redactUrl(store.url)} (STORE): ${reason}`;
  }
  if (err instanceof StoreUnavailableError && store.kind === "redis-cluster") {
    const reason = err.message.replace(/^redis unavailable: /, "");
    return `cannot reach the Redis Cluster at ${store.nodes.join(",")} (STORE): ${reason}`;
  }
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as SystemError;
  const code = typeof e.code === "string" ? e.code : "";
  if (e.syscall === "listen" || code === "EADDRINUSE") {
    if (code === "EADDRINUSE") {
      return `port ${config.port} is in use (PORT); stop the other process or choose another port`;
    }
    if (code === "EACCES" || code === "EPERM") {
      return `no permission to listen on port ${config.port} (PORT); ports below 1024 need privileges: choose another port`;
    }
    if (code === "EADDRNOTAVAIL") {
      return `cannot listen on ${config.host} (HOST): not an address of this machine`;
    }
  }
  if (e.syscall === "getaddrinfo") {
    return `cannot listen on ${config.host} (HOST): no such host`;
  }
  if (code.startsWith("SQLITE_") && store.kind === "sqlite") {
    const detail = typeof e.message === "string" ? e.message : code;
    const hint = code === "SQLITE_BUSY" ? " (is another server using it?)" : "";
    return `cannot open the SQLite database ${join(store.dataDir, "switchboard.db")} (DATA_DIR): ${detail}${hint}`;
  }
  const path = typeof e.path === "string" ? e.path : undefined;
  if (path !== undefined && code in REASONS) {
    const reason = REASONS[code] as string;
    const files: Array<[string | undefined, string]> = [
      [config.tlsCert, "TLS_CERT"],
      [config.tlsKey, "TLS_KEY"],
      [config.authJwksFile, "AUTH_JWKS_FILE"],
    ];
    for (const [file, name] of files) {
      if (file === path) return `cannot read ${name} ${file}: ${reason}`;
    }
    // The data directory, or a directory on the way to it.
    if (store.kind === "sqlite") {
      const dir = store.dataDir.replace(/\/$/, "");
      const related =
        path === dir ||
        path.startsWith(`${dir}/`) ||
        `${dir}/`.startsWith(`${path.replace(/\/$/, "")}/`);
      if (related) return `cannot use DATA_DIR ${store.dataDir}: ${reason} (${path})`;
    }
  }
  return undefined;
}
