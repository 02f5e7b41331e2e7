// README.md's configuration table and `.env.example`, generated from SETTINGS (settings.ts):
// `pnpm docs:config` writes them (scripts/docs-config.ts), settings-docs.test.ts fails when the
// committed files differ from what this renders.
import {
  type AnySetting,
  defaultText,
  flagOf,
  plainText,
  SETTINGS,
  shownDefault,
} from "./settings.js";

/** The README comment lines around the generated table; the script replaces what is between. */
export const TABLE_BEGIN =
  "<!-- generated from apps/server/src/settings.ts by `pnpm docs:config`: edit there, not here -->";
export const TABLE_END = "<!-- end of the generated table -->";

const all = Object.values(SETTINGS) as AnySetting[];

/** The Markdown table of every setting: variable, flag, default, meaning. */
export function settingsTable(): string {
  const cell = (markdown: string) => markdown.replaceAll("|", "\\|");
  return [
    "| variable | flag | default | meaning |",
    "|---|---|---|---|",
    ...all.map(
      (s) =>
        `| \`${s.env}\` | \`${flagOf(s)}\` | ${cell(shownDefault(s) ?? "unset")} | ${cell(s.doc)} |`,
    ),
  ].join("\n");
}

/**
 * `.env.example`: every setting commented out at its default, under its doc line. A default
 * computed at start-up (INSTANCE_ID) or none leaves the value empty.
 */
export function envExample(): string {
  const lines = [
    "# Switchboard server settings: each one, commented out at its default. Generated from",
    '# apps/server/src/settings.ts by `pnpm docs:config` (README.md, "Configuration", has the same',
    "# list). Copy to .env, uncomment what you change, and load it into the server's environment,",
    "# e.g. `set -a; . ./.env; set +a; pnpm start`. A flag (PORT: --port) wins over its variable.",
  ];
  for (const s of all) {
    const computed = s.shownDefault !== undefined ? ` (default: ${plainText(s.shownDefault)})` : "";
    lines.push("", `# ${plainText(s.doc)}${computed}`);
    lines.push(`# ${s.env}=${s.shownDefault !== undefined ? "" : (defaultText(s) ?? "")}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * `readme` with the text between {@link TABLE_BEGIN} and {@link TABLE_END} replaced by
 * {@link settingsTable}.
 *
 * @throws Error when the README lacks either marker.
 */
export function withSettingsTable(readme: string): string {
  const begin = readme.indexOf(TABLE_BEGIN);
  const end = readme.indexOf(TABLE_END, begin);
  if (begin < 0 || end < 0) {
    throw new Error(`README.md has no generated table (between ${TABLE_BEGIN} and ${TABLE_END})`);
  }
  return `${readme.slice(0, begin + TABLE_BEGIN.length)}\n\n${settingsTable()}\n\n${readme.slice(end)}`;
}
