import type { Command } from "commander";
import { InvalidArgumentError, Option } from "commander";
import { SignJWT } from "jose";
import type { CliRuntime } from "../cli-context.js";
import { CliError, EXIT_USAGE } from "../cli-error.js";

/** Parses a lifetime such as `30m`, `12h`, `7d` or plain seconds. */
export function parseTtl(value: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(value.trim());
  if (m === null)
    throw new InvalidArgumentError("must be a number of seconds or like 30m, 12h, 7d");
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as "" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

/** Splits a comma-separated option into its non-empty, trimmed items. */
function list(value: string | undefined): string[] | undefined {
  return value
    ?.split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/**
 * Mints a development token: an HS256 JWT signed with the server's AUTH_JWT_SECRET, with `sub`,
 * an optional `rooms` claim (names or `prefix-*` patterns), an optional `roles` claim (`admin`:
 * StreamMetrics and LogService; README "Authentication"), `iat` and `exp`.
 */
export async function mintToken(options: {
  secret: string;
  sub: string;
  rooms?: string[] | undefined;
  roles?: string[] | undefined;
  ttlS: number;
}): Promise<string> {
  const claims = {
    ...(options.rooms === undefined ? {} : { rooms: options.rooms }),
    ...(options.roles === undefined ? {} : { roles: options.roles }),
  };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + options.ttlS)
    .sign(new TextEncoder().encode(options.secret));
}

/** `token`: prints a development bearer token for `--token` / SWITCHBOARD_TOKEN. */
export function addTokenCommand(program: Command, runtime: CliRuntime): void {
  program
    .command("token")
    .description(
      "mint a development bearer token (HS256, signed with AUTH_JWT_SECRET); use it with --token or SWITCHBOARD_TOKEN",
    )
    .requiredOption("--sub <user>", "the identity: every message is stored as this user")
    .option(
      "--rooms <patterns>",
      "comma-separated rooms the token may use; `prefix-*` matches a prefix (default: every room)",
    )
    .option(
      "--roles <names>",
      "comma-separated roles the token grants: admin (the server's metrics and logs); default: none",
    )
    .addOption(
      new Option("--ttl <duration>", "lifetime: seconds, or 30m, 12h, 7d")
        .argParser(parseTtl)
        .default(12 * 3600, "12h"),
    )
    .addOption(
      new Option("--secret <secret>", "the server's AUTH_JWT_SECRET").env("AUTH_JWT_SECRET"),
    )
    .action(
      async (opts: {
        sub: string;
        rooms?: string;
        roles?: string;
        ttl: number;
        secret?: string;
      }) => {
        if (opts.secret === undefined || opts.secret === "") {
          throw new CliError(
            "set AUTH_JWT_SECRET (or --secret) to the server's secret",
            EXIT_USAGE,
          );
        }
        const token = await mintToken({
          secret: opts.secret,
          sub: opts.sub,
          rooms: list(opts.rooms),
          roles: list(opts.roles),
          ttlS: opts.ttl,
        });
        runtime.stdout.write(`${token}\n`);
      },
    );
}
