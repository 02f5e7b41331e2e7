/** The page's views, from its path. */
export type Route =
  | { view: "rooms" }
  | { view: "room"; room: string }
  | { view: "metrics" }
  | { view: "logs" }
  | { view: "import" }
  | { view: "not-found" };

/** The route of a path: /, /rooms/<name>, /charts, /logs, /import. */
export function parseRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/" || path === "/rooms") return { view: "rooms" };
  // Not /metrics: that is the server's Prometheus endpoint.
  if (path === "/charts") return { view: "metrics" };
  if (path === "/logs") return { view: "logs" };
  if (path === "/import") return { view: "import" };
  const room = /^\/rooms\/([^/]+)$/.exec(path)?.[1];
  if (room !== undefined) {
    try {
      return { view: "room", room: decodeURIComponent(room) };
    } catch {
      return { view: "not-found" };
    }
  }
  return { view: "not-found" };
}

/** The path of a room's view. */
export function roomPath(room: string): string {
  return `/rooms/${encodeURIComponent(room)}`;
}

/**
 * History-API routing: the server answers every page path with index.html (apps/server's
 * dashboard plugin), so links are plain paths and the back button works.
 */
export class Router {
  #path = $state("/");
  #route = $derived(parseRoute(this.#path));

  constructor() {
    this.#path = globalThis.location?.pathname ?? "/";
    globalThis.addEventListener?.("popstate", () => {
      this.#path = globalThis.location.pathname;
    });
  }

  get route(): Route {
    return this.#route;
  }

  get path(): string {
    return this.#path;
  }

  /** Goes to `path` and adds a history entry (keeps the query, e.g. ?protocol=). */
  navigate(path: string): void {
    if (path === this.#path) return;
    globalThis.history?.pushState(null, "", `${path}${globalThis.location?.search ?? ""}`);
    this.#path = path;
  }
}
