// Checks the contract before any test runs (`pnpm check:proto`):
//  1. buf lint (STANDARD, with the exceptions explained in buf.yaml);
//  2. buf breaking against contract/baseline.binpb (FILE rules): no accidental breaking change
//     since the baseline was last taken deliberately (`pnpm contract:baseline`);
//  3. buf breaking against the seed's own chat.proto (contract/seed, WIRE_JSON rules): a client
//     generated from the seed still works against us;
//  4. the committed generated code is exactly what `buf generate` writes now;
//  5. proto/buf/validate/validate.proto is what libs/proto/scripts/validate-proto.ts prints from
//     the @bufbuild/protovalidate package, and compiles to that package's descriptor exactly.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { checkValidateProto, VALIDATE_PROTO_PATH } from "../libs/proto/scripts/validate-proto.ts";

const root = join(import.meta.dirname, "..");
const buf = join(root, "node_modules", ".bin", "buf");
const env = { ...process.env, PATH: `${join(root, "node_modules", ".bin")}:${process.env.PATH}` };

function run(step: string, args: string[]): void {
  try {
    execFileSync(buf, args, { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
    console.log(`ok   ${step}`);
  } catch {
    console.error(`FAIL ${step}`);
    process.exit(1);
  }
}

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path, "utf8"));
    }
  };
  walk(dir);
  return out;
}

const scratch = mkdtempSync(join(tmpdir(), "switchboard-proto-"));
try {
  run("buf lint", ["lint"]);
  run("buf breaking against contract/baseline.binpb", [
    "breaking",
    "--against",
    "contract/baseline.binpb",
  ]);

  // The seed lives inside this buf workspace, which buf refuses as an input: check a copy.
  const seed = join(scratch, "seed");
  cpSync(join(root, "contract", "seed"), seed, { recursive: true });
  const wireJson = JSON.stringify({ version: "v2", breaking: { use: ["WIRE_JSON"] } });
  run("wire and JSON compatible with the seed's chat.proto", [
    "breaking",
    "--config",
    JSON.stringify({
      version: "v2",
      modules: [{ path: "proto" }],
      breaking: { use: ["WIRE_JSON"] },
    }),
    "--against",
    seed,
    "--against-config",
    wireJson,
  ]);

  const generated = join(scratch, "gen");
  execFileSync(buf, ["generate", "--output", generated], { cwd: root, env, stdio: "inherit" });
  const want = files(join(generated, "libs", "proto", "src", "gen"));
  const have = files(join(root, "libs", "proto", "src", "gen"));
  const stale = [...new Set([...want.keys(), ...have.keys()])].filter(
    (f) => want.get(f) !== have.get(f),
  );
  if (stale.length > 0) {
    console.error(
      `FAIL generated code is stale (run \`pnpm generate\` and commit): ${stale.join(", ")}`,
    );
    process.exit(1);
  }
  console.log("ok   generated code matches proto/");

  const wrong = checkValidateProto(
    root,
    (out) =>
      execFileSync(buf, ["build", "-o", out, "--path", VALIDATE_PROTO_PATH], { cwd: root, env }),
    scratch,
  );
  if (wrong !== undefined) {
    console.error(`FAIL ${wrong}`);
    process.exit(1);
  }
  console.log(`ok   ${VALIDATE_PROTO_PATH} is @bufbuild/protovalidate's, printed`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
