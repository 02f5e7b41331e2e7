// The server's layers (apps/server/src), top first: a module may import its own layer and the
// layers below it, never one above. This list is the one statement of the order; ARCHITECTURE.md
// ("The map") describes each layer and points here. `pnpm lint` runs it (so do test:fast and
// test). Tests (`*.test.ts`) may compose layers, so the order does not bind them; cycles do.
// dependency-cruiser: https://github.com/sverweij/dependency-cruiser
const SRC = "^apps/server/src/";

/** [name, path pattern] from the top of the server down. */
const LAYERS = [
  ["entry", `${SRC}(server|cluster|index|logger|startup-error)\\.ts$`],
  ["app", `${SRC}(app|routes|dashboard)\\.ts$`],
  ["ops", `${SRC}ops/`],
  ["services", `${SRC}services/`],
  ["edge/rpc", `${SRC}edge/rpc/`],
  ["edge/transport", `${SRC}edge/transport/`],
  ["policy", `${SRC}policy/`],
  ["telemetry", `${SRC}telemetry/`],
  ["domain", `${SRC}domain/`],
  ["store", `${SRC}store/`],
  ["base", `${SRC}(config|settings|settings-docs|cluster-channel)\\.ts$`],
];

const TEST = "\\.test\\.ts$";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...LAYERS.slice(1).map(([name, path], i) => ({
      name: `no-upward-from-${name.replace("/", "-")}`,
      comment: `${name} may not import a layer above it (${LAYERS.slice(0, i + 1)
        .map(([above]) => above)
        .join(", ")}): see the layer list in .dependency-cruiser.cjs`,
      severity: "error",
      from: { path, pathNot: TEST },
      to: { path: LAYERS.slice(0, i + 1).map(([, above]) => above) },
    })),
    {
      name: "no-unlayered-module",
      comment:
        "every module of apps/server/src belongs to a layer: add it to LAYERS in .dependency-cruiser.cjs",
      severity: "error",
      from: { path: SRC, pathNot: [TEST, ...LAYERS.map(([, path]) => path)] },
      to: {},
    },
    {
      name: "no-unresolvable",
      comment:
        "an import that resolves to nothing (a file moved to another layer) would hide an arrow from every rule above",
      severity: "error",
      from: { path: SRC },
      to: { couldNotResolve: true },
    },
    {
      name: "no-circular",
      comment: "no import cycle, in a layer or across layers",
      severity: "error",
      from: { path: SRC },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules" },
    // Type-only imports are arrows too.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "apps/server/tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".js", ".d.ts"],
    },
  },
};
