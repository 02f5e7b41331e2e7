import { existsSync, statSync } from "node:fs";
import { join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";

/** Options of {@link dashboardPlugin}. */
export interface DashboardOptions {
  /** The built dashboard (index.html and assets/). Default: apps/dashboard/dist. */
  root?: string;
}

/** apps/dashboard/dist, beside this app in the workspace. */
export const DEFAULT_DASHBOARD_ROOT = fileURLToPath(
  new URL("../../dashboard/dist/", import.meta.url),
);

// An RPC path is /<package>.<Service>/<Method> (gRPC over HTTP/2 spec, "Path"); its first
// segment has a dot, which no dashboard page has, so the page fallback can never answer one.
const RPC_PATH = /^\/[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+\/[^/]*$/;

/**
 * Serves the dashboard, a single-page app, at / beside the RPC routes: its files by name
 * (hashed assets/ cached for a year, everything else revalidated), and index.html for any other
 * GET that accepts text/html and is not RPC-shaped, so /rooms/general opens the app. Everything
 * else goes to the app's not-found handler (an unknown RPC stays Unimplemented). Without a build,
 * logs a warning and serves nothing.
 */
export const dashboardPlugin = fp(
  async (app: FastifyInstance, options: DashboardOptions) => {
    const root = options.root ?? DEFAULT_DASHBOARD_ROOT;
    if (!existsSync(join(root, "index.html"))) {
      app.log.warn(
        { root },
        "dashboard not built; run `pnpm --filter @switchboard/dashboard build` (pnpm start does)",
      );
      return;
    }
    await app.register(fastifyStatic, {
      root,
      // One route per file present at start-up: no wildcard route that could match an RPC path.
      wildcard: false,
      cacheControl: false,
      setHeaders(reply, path) {
        const immutable = path.startsWith(join(root, "assets"));
        reply.header(
          "cache-control",
          immutable ? "public, max-age=31536000, immutable" : "no-cache",
        );
      },
    });
    app.get("/*", (req: FastifyRequest, reply: FastifyReply) => {
      const path = req.url.split("?")[0] ?? "/";
      // A file built after start-up (a rebuild while the server runs) has no route of its own.
      const file = builtFile(root, path);
      if (file !== undefined) return reply.sendFile(file);
      const acceptsHtml = String(req.headers.accept ?? "").includes("text/html");
      if (!acceptsHtml || RPC_PATH.test(path)) return reply.callNotFound();
      return reply.sendFile("index.html");
    });
  },
  { name: "switchboard-dashboard", fastify: "5.x" },
);

/** The path of an existing file under `root` named by a URL path, or undefined. */
function builtFile(root: string, urlPath: string): string | undefined {
  let relative: string;
  try {
    relative = normalize(decodeURIComponent(urlPath)).replace(/^[/\\]+/, "");
  } catch {
    return undefined;
  }
  if (relative === "" || relative.split(sep).includes("..")) return undefined;
  const full = join(root, relative);
  return existsSync(full) && statSync(full).isFile() ? relative : undefined;
}
