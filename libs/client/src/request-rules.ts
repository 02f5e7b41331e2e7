import { create, type DescField, getOption } from "@bufbuild/protobuf";
import { createValidator, type Validator } from "@bufbuild/protovalidate";
import { field as fieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import type { Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { ListMembersRequestSchema } from "@switchboard/proto/gen/chat/chat_pb";

// The contract's request rules on the client side: the same protovalidate rules the server
// enforces, read from the generated descriptors (proto/chat/*.proto, `buf.validate` options), so
// a client refuses what the server would refuse without a copy of any rule. What the server's
// settings add (MAX_CONTENT_BYTES, MAX_USER_BYTES: only tighter than the schema's ceilings) is
// not known here; the server still says so.

let shared: Validator | undefined;

/** One validator for the process: it compiles each message type's rules once, when first used. */
function validator(): Validator {
  shared ??= createValidator();
  return shared;
}

/**
 * Why `room` is not a room name the contract accepts, as the server would word it ("room: does
 * not match regex pattern `^[A-Za-z0-9._-]{1,64}$` [string.pattern]", "room: value is required
 * [required]"), or undefined when it is one. The rule is every request's `room` rule (chat.proto
 * writes the same on each). Browser-safe.
 */
export function roomNameProblem(room: string): string | undefined {
  const result = validator().validate(
    ListMembersRequestSchema,
    create(ListMembersRequestSchema, { room }),
  );
  if (result.kind === "valid") return undefined;
  return result.error.message;
}

/**
 * A client interceptor that checks each unary and server-streaming request against the
 * contract's rules before it is sent: a request the server would refuse fails at once with the
 * server's answer, InvalidArgument with the same message and `buf.validate.Violations` detail,
 * and nothing goes on the wire. connect-es's standard interceptor (`@connectrpc/validate`), as the
 * server uses it. Client and bidi streams (UploadMessages, Chat) are left to the server, which
 * names a bad message by its index in the stream ("message 2: …") after storing the ones before
 * it. Use it only with a client built from the same contract as the server (this repository's
 * CLI and dashboard are).
 */
export function requestRulesInterceptor(): Interceptor {
  const check = createValidateInterceptor({ validator: validator() });
  return (next) => {
    const checked = check(next);
    return (req) => (req.stream ? next(req) : checked(req));
  };
}

/**
 * The largest value the contract allows in an integer request field: its `lte` rule
 * (`(buf.validate.field).uint32.lte = 500` on GetHistoryRequest.limit), read from the generated
 * descriptor, for a client that bounds its own input (a command-line option's range) without a
 * copy of the number.
 * @throws Error when the field has no such rule.
 */
export function ruleUpperBound(field: DescField): number {
  const rules = getOption(field, fieldRules).type;
  const lte =
    rules.case === "int32" || rules.case === "uint32" || rules.case === "uint64"
      ? rules.value.lessThan
      : undefined;
  if (lte?.case !== "lte") throw new Error(`${field.toString()} has no lte rule`);
  return Number(lte.value);
}
