import cluster from "node:cluster";
import { resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import {
  type AnySetting,
  flagOf,
  plainText,
  SETTINGS,
  type Settings,
  shownDefault,
} from "./settings.js";

export { DEFAULTS, LOG_LEVELS, SETTINGS, type Settings } from "./settings.js";

/**
 * Where the server keeps messages: the embedded SQLite database in `dataDir` (absolute), memory
 * for throwaway runs, Redis at `url`, or a Redis Cluster reached through its seed `nodes`
 * (`host:port`) for several nodes.
 */
export type StoreConfig =
  | { readonly kind: "sqlite"; readonly dataDir: string }
  | { readonly kind: "memory" }
  | { readonly kind: "redis"; readonly url: string }
  | { readonly kind: "redis-cluster"; readonly nodes: readonly string[] };

/**
 * The server's whole configuration, read, validated and frozen once at start-up by
 * {@link loadConfig}: every setting of {@link SETTINGS} (settings.ts documents each), with
 * STORE and DATA_DIR as one {@link StoreConfig}, paths absolute, and the instance's name
 * computed.
 */
export type Config = Readonly<
  Omit<Settings, "store" | "dataDir" | "instanceId"> & {
    store: StoreConfig;
    /** This process's name in metrics and logs: INSTANCE_ID or host:port, `#N` for worker N. */
    instanceId: string;
  }
>;

const settings = Object.entries(SETTINGS) as Array<[keyof Settings, AnySetting]>;

/** A setting's `--help` line: its doc, then its default and variable the way commander shows them. */
function helpLine(setting: AnySetting): string {
  const shown = shownDefault(setting);
  const extra = shown === undefined ? [] : [`default: ${plainText(shown)}`];
  return `${plainText(setting.doc)} (${[...extra, `env: ${setting.env}`].join(", ")})`;
}

/**
 * The command line, for `--help` and for parsing flags. Variables and defaults are applied by
 * {@link loadConfig}, not by commander (which would read the global process.env).
 */
export function createConfigCommand(): Command {
  const command = new Command("switchboard-server").description(
    "Serve chat.ChatService over gRPC, gRPC-Web and Connect on one port (HTTP/1.1 and h2c; TLS with ALPN when TLS_CERT and TLS_KEY are set).",
  );
  for (const [, setting] of settings) {
    command.addOption(
      new Option(`${flagOf(setting)} ${setting.parser.arg}`, helpLine(setting)).argParser(
        (text: string) => setting.parser.parse(text, setting.env),
      ),
    );
  }
  return command;
}

/**
 * The directory relative paths (DATA_DIR, TLS_CERT, TLS_KEY, AUTH_JWKS_FILE) are resolved
 * against: where the user ran the command. npm and pnpm run a package's scripts in the
 * package's directory (`pnpm start` in apps/server) and set INIT_CWD to the directory the
 * command was run from; without INIT_CWD, the working directory.
 */
export function launchDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const init = env.INIT_CWD;
  return init !== undefined && init !== "" ? init : process.cwd();
}

/**
 * Reads and validates the configuration from command-line flags and the variables of `env`
 * (a flag wins over its variable; either is checked by the setting's parser); unset settings
 * take their defaults. Relative paths become absolute, against {@link launchDirectory}. In a
 * node:cluster worker (`worker`, by default `cluster.worker`) the instance's name gets `#` and
 * the worker's id. The result is frozen.
 *
 * @throws ConfigError with a one-line message naming the variable, for an invalid value.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  worker: { readonly id: number } | undefined = cluster.worker,
): Config {
  const command = createConfigCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {} });
  try {
    command.parse(argv as string[], { from: "user" });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ConfigError(message.replace(/^error: /, ""));
  }
  const base = launchDirectory(env);
  const values: Record<string, unknown> = {};
  for (const [key, setting] of settings) {
    const option = command.options.find((o) => o.long === flagOf(setting)) as Option;
    const name = option.attributeName();
    let value: unknown = setting.default;
    if (command.getOptionValueSource(name) === "cli") {
      value = command.getOptionValue(name);
    } else {
      const text = env[setting.env];
      if (text !== undefined) value = fromEnv(setting, option, text);
    }
    values[key] = setting.path === true && typeof value === "string" ? resolve(base, value) : value;
  }
  const read = values as unknown as Settings;

  if ((read.tlsCert === undefined) !== (read.tlsKey === undefined)) {
    throw new ConfigError("TLS_CERT and TLS_KEY must be set together");
  }
  const store: StoreConfig =
    read.store.kind === "sqlite" ? { kind: "sqlite", dataDir: read.dataDir } : read.store;
  if (read.workers > 1 && store.kind === "memory") {
    throw new ConfigError(
      `WORKERS=${read.workers} needs a store the workers can share: STORE=sqlite or redis://… (the memory store cannot be shared between processes; set WORKERS=1)`,
    );
  }
  const name = read.instanceId ?? `${read.host}:${read.port}`;
  const { dataDir: _, ...rest } = read;
  return Object.freeze({
    ...rest,
    store: Object.freeze(store),
    instanceId: worker === undefined ? name : `${name}#${worker.id}`,
  });
}

/** A variable's value through its setting's parser, with commander's wording for a bad one. */
function fromEnv(setting: AnySetting, option: Option, text: string): unknown {
  try {
    return setting.parser.parse(text, setting.env);
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    throw new ConfigError(
      `option '${option.flags}' value '${text}' from env '${setting.env}' is invalid. ${err.message}`,
    );
  }
}

/** An invalid configuration value; its message is one line that names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
