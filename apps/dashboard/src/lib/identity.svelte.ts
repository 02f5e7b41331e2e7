import { randomId } from "./ids.ts";
import { storedValue, storeValue } from "./storage.ts";

const NAME_KEY = "switchboard.user";

/**
 * Who the viewer is in rooms: a name kept in localStorage, "operator-xxxx" at first; or, while an
 * access token is in use (the server has authentication on), the token's subject, which the
 * server puts in every request's `user` whatever the page sends.
 */
export class Identity {
  #name = $state("");
  #subject = $state<string | undefined>(undefined);

  constructor(initial?: string) {
    const fromUrl = new URLSearchParams(globalThis.location?.search ?? "").get("user");
    this.#name =
      initial ?? fromUrl ?? storedValue(NAME_KEY) ?? `operator-${randomId().slice(0, 4)}`;
  }

  /** The subject's name while a token is in use, else the chosen name. */
  get name(): string {
    return this.#subject ?? this.#name;
  }

  /** The token's `sub` (Connection.subject); undefined without a token. */
  get subject(): string | undefined {
    return this.#subject;
  }

  set subject(value: string | undefined) {
    this.#subject = value;
  }

  /** Sets the chosen name (kept for when no token is in use); blank is ignored. */
  set name(value: string) {
    const trimmed = value.trim();
    if (trimmed === "") return;
    this.#name = trimmed;
    storeValue(NAME_KEY, trimmed);
  }
}
