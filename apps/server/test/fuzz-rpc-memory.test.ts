// Property-based fuzzing of every RPC's request over every protocol (test/fuzz-rpc.ts), against
// a server with STORE=memory.
import { fuzzEveryRpc } from "./fuzz-rpc.js";

fuzzEveryRpc("memory");
