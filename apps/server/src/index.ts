// The server's domain and stores, for other packages (the benchmarks' grpc-js peer runs the same
// rooms, fan-out and store behind another protocol layer). The server itself starts in server.ts.
export { buildApp } from "./app.js";
export { type Config, DEFAULTS, loadConfig, type StoreConfig } from "./config.js";
export { BoundedQueue } from "./domain/bounded-queue.js";
export {
  FeedInterruptedError,
  OffsetOutOfRangeError,
  SlowSubscriberError,
  ValidationError,
} from "./domain/errors.js";
export { RoomHub } from "./domain/room-hub.js";
export { Rooms, toMessage } from "./domain/rooms.js";
export { Subscriber } from "./domain/subscriber.js";
export type { Backend } from "./store/backend.js";
export { createBackend } from "./store/create-backend.js";
export { createMemoryStore } from "./store/memory/message-store.js";
export { createMemoryPresence } from "./store/memory/presence.js";
export type { MessageStore, StoredMessage } from "./store/message-store.js";
export type { Presence } from "./store/presence.js";
export { createSqliteStore } from "./store/sqlite/message-store.js";
