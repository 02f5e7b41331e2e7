// The contract's room-name rule, as the server checks it: protovalidate on the generated
// descriptors (@switchboard/client/rules), no copy of the pattern. Loaded on first use, in a chunk
// of its own: protovalidate with its CEL and RE2 engines is about 240 kB minified, more than half
// the rest of the app, and the first paint needs none of it.

/** Why `room` is not a room name the contract accepts ("room: does not match …"), or undefined. */
export type RoomRule = (room: string) => string | undefined;

let loading: Promise<RoomRule> | undefined;

/** The rule, loading it the first time. */
export function loadRoomRule(): Promise<RoomRule> {
  loading ??= import("@switchboard/client/rules").then((m) => m.roomNameProblem);
  return loading;
}
