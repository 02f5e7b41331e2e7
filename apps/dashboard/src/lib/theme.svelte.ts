import { storedValue, storeValue } from "./storage.ts";

export type ThemeChoice = "system" | "light" | "dark";

const THEME_KEY = "switchboard.theme";

/** Light, dark, or the system's choice; applied as `data-theme` on <html> for styles.css. */
export class Theme {
  #choice = $state<ThemeChoice>("system");

  constructor() {
    const stored = storedValue(THEME_KEY);
    this.#choice = stored === "light" || stored === "dark" ? stored : "system";
    this.#apply();
  }

  get choice(): ThemeChoice {
    return this.#choice;
  }

  set choice(value: ThemeChoice) {
    this.#choice = value;
    storeValue(THEME_KEY, value);
    this.#apply();
  }

  /** The theme in effect now. */
  get resolved(): "light" | "dark" {
    if (this.#choice !== "system") return this.#choice;
    return globalThis.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  #apply(): void {
    const root = globalThis.document?.documentElement;
    if (root === undefined) return;
    if (this.#choice === "system") delete root.dataset.theme;
    else root.dataset.theme = this.#choice;
  }
}
