import { createWebTransport } from "@switchboard/client/web";
import { mount } from "svelte";
import App from "./App.svelte";
import { Connection } from "./lib/connection.svelte.ts";
import "./styles.css";

// The page talks to its own origin: the server that served it speaks every RPC on the same port.
const connection = new Connection(({ protocol, interceptors, token }) =>
  createWebTransport({
    baseUrl: window.location.origin,
    protocol,
    interceptors,
    ...(token === undefined ? {} : { token }),
  }),
);

mount(App, { target: document.getElementById("app") as HTMLElement, props: { connection } });
