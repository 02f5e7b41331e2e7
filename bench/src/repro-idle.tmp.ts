// Throwaway: open N idle streams on a fresh Switchboard and read its connection close reasons.
import { SubscriberSet } from "./lib/fanout-load.js";
import { startServer } from "./lib/servers.js";

const n = Number(process.argv[2] ?? 100000);
const running = await startServer("switchboard", {});
const set = new SubscriberSet(running.url, { subscribers: n, connections: Math.ceil(n / 100), room: "idle", oneUser: true });
let err = "";
try { await set.settle(120_000); } catch (e) { err = String(e); }
const metrics = await (await fetch(`${running.url}/metrics`)).text();
console.log(`welcomed ${set.welcomed}/${n} ${err} open ${((set.allWelcomedAt - set.openedAt) / 1000).toFixed(1)} s`);
for (const line of metrics.split("\n")) if (line.startsWith("switchboard_connections_")) console.log(line);
set.close();
await running.stop();
process.exit(0);
