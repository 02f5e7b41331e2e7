import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

// Where `vite dev` forwards RPCs: the Fastify server that also serves the built app in production.
const rpcTarget = process.env.SWITCHBOARD_DEV_TARGET ?? "http://127.0.0.1:8080";

// Every RPC path is /<package>.<Service>/<Method>; the page only ever calls these (health: the
// connection's reconnection probe during an outage).
const rpcPaths = ["/chat.ChatService", "/chat.LogService", "/grpc.health.v1.Health"];

export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir: "dist",
    // uPlot and the protobuf runtime are most of the bundle; one chunk keeps first paint simple.
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: Object.fromEntries(rpcPaths.map((path) => [path, { target: rpcTarget }])),
  },
});
