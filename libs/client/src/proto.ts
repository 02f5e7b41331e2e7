/**
 * The schema of chat.ChatService (messages, enums and the service descriptor for connect-es'
 * `createClient`), as `@switchboard/proto/gen/chat/chat_pb` generates it. The packed
 * `@switchboard/client` carries this generated code in its own dist/, so a project installs one
 * tarball and imports the service from here: `import { ChatService } from "@switchboard/client/proto"`.
 */
export * from "@switchboard/proto/gen/chat/chat_pb";
