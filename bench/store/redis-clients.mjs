import Redis from "ioredis";
import { createClient } from "redis";

const PORT = 16399,
  N = 20000,
  CONC = 64;
const SCRIPT = `
local offset = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], offset .. '-0', 'id', ARGV[1], 'u', ARGV[2], 'c', ARGV[3])
redis.call('PUBLISH', KEYS[3], offset)
return offset`;
async function measure(name, evalOne, xrange, flush) {
  await flush();
  let i = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      while (i < N) {
        i++;
        await evalOne(i);
      }
    }),
  );
  const appendRate = N / ((performance.now() - t0) / 1000);
  const t1 = performance.now();
  for (let k = 0; k < 200; k++) await xrange(1 + ((k * 97) % (N - 500)));
  const pageRate = 200 / ((performance.now() - t1) / 1000);
  console.log(name, "appends/s", Math.round(appendRate), "500-entry pages/s", Math.round(pageRate));
}
const order = process.argv[2] ?? "io-first";
const io = new Redis(PORT);
io.defineCommand("append", { numberOfKeys: 3, lua: SCRIPT });
const runIo = () =>
  measure(
    "ioredis",
    (i) => io.append("s", "l", "ch", `id${i}`, "alice", `hello world ${i}`),
    (from) => io.xrange("l", `${from}-0`, "+", "COUNT", 500),
    () => io.flushall(),
  );
const nr = createClient({ url: `redis://127.0.0.1:${PORT}`, scripts: {} });
await nr.connect();
const sha = await nr.scriptLoad(SCRIPT);
const runNr = () =>
  measure(
    "redis",
    (i) =>
      nr.evalSha(sha, {
        keys: ["s", "l", "ch"],
        arguments: [`id${i}`, "alice", `hello world ${i}`],
      }),
    (from) => nr.xRange("l", `${from}-0`, "+", { COUNT: 500 }),
    () => nr.flushAll(),
  );
if (order === "io-first") {
  await runIo();
  await runNr();
} else {
  await runNr();
  await runIo();
}
process.exit(0);
