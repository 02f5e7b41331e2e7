import { randomId } from "./ids.ts";
import { storedValue, storeValue } from "./storage.ts";

const NAME_KEY = "switchboard.user";

/** Who the viewer is in rooms: a name kept in localStorage, "operator-xxxx" at first. */
export class Identity {
  #name = $state("");

  constructor(initial?: string) {
    const fromUrl = new URLSearchParams(globalThis.location?.search ?? "").get("user");
    this.#name =
      initial ?? fromUrl ?? storedValue(NAME_KEY) ?? `operator-${randomId().slice(0, 4)}`;
  }

  get name(): string {
    return this.#name;
  }

  set name(value: string) {
    const trimmed = value.trim();
    if (trimmed === "") return;
    this.#name = trimmed;
    storeValue(NAME_KEY, trimmed);
  }
}
