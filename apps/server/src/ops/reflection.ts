import {
  createFileRegistry,
  type DescFile,
  type FileRegistry,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@switchboard/proto/gen/grpc/reflection/v1/reflection_pb";
import * as v1alpha from "@switchboard/proto/gen/grpc/reflection/v1alpha/reflection_pb";

/** gRPC status NOT_FOUND, as the reflection protocol's ErrorResponse.error_code carries it. */
const NOT_FOUND = 5;

/** The requests and answers of ServerReflectionInfo, identical in v1 and v1alpha. */
type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type Answer = NonNullable<
  MessageInitShape<typeof v1.ServerReflectionResponseSchema>["messageResponse"]
>;

/**
 * gRPC server reflection (grpc/grpc doc/server-reflection.md), `grpc.reflection.v1` and the
 * older `grpc.reflection.v1alpha` that some tools still ask for: lists `services` and serves the
 * FileDescriptorProtos of `files` and of everything they import (google/protobuf/*), so that
 * buf curl, grpcurl, grpcui and Postman can call every method without a schema. Descriptors are
 * built from the generated code's embedded files (@bufbuild/protobuf's file registry).
 */
export function reflectionRoutes(
  files: readonly DescFile[],
  services: readonly string[],
): (router: ConnectRouter) => void {
  const registry = fileRegistry(files);
  const answer = (req: Request): Answer => {
    const m = req.messageRequest;
    switch (m.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: services.map((name) => ({ name })) },
        };
      case "fileByFilename":
        return descriptors(registry, registry.getFile(m.value), `file ${m.value}`);
      case "fileContainingSymbol":
        return descriptors(registry, fileOfSymbol(registry, m.value), `symbol ${m.value}`);
      case "fileContainingExtension":
        return notFound(`extension ${m.value.containingType} ${m.value.extensionNumber}`);
      case "allExtensionNumbersOfType": {
        const type = registry.getMessage(m.value);
        if (type === undefined) return notFound(`type ${m.value}`);
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: m.value, extensionNumber: [] },
        };
      }
      default:
        return notFound("an empty request");
    }
  };
  return (router) => {
    router.service(v1.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          yield { validHost: req.host, originalRequest: req, messageResponse: answer(req) };
        }
      },
    });
    router.service(v1alpha.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          // v1alpha's messages have the same fields and numbers as v1's.
          yield {
            validHost: req.host,
            originalRequest: req,
            messageResponse: answer(req) as never,
          };
        }
      },
    });
  };
}

/** One registry of `files` and, transitively, every file they import. */
function fileRegistry(files: readonly DescFile[]): FileRegistry {
  const byName = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (byName.has(file.proto.name)) return;
    byName.set(file.proto.name, file);
    for (const dep of file.dependencies) visit(dep);
  };
  for (const file of files) visit(file);
  return createFileRegistry(
    ...files.map((file) => createFileRegistry(file.proto, (name) => byName.get(name))),
  );
}

/** The file that declares `symbol`: a message, enum, service, method, field or enum value. */
function fileOfSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  // A method, field or enum value is declared in its parent's file.
  const parent = symbol.slice(0, Math.max(0, symbol.lastIndexOf(".")));
  return (registry.get(symbol) ?? registry.get(parent))?.file;
}

/** The file and everything it imports, the file first (what grpc-go's reflection sends). */
function descriptors(registry: FileRegistry, file: DescFile | undefined, what: string): Answer {
  if (file === undefined) return notFound(what);
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, registry.getFile(f.proto.name)?.proto ?? f.proto));
    for (const dep of f.dependencies) visit(dep);
  };
  visit(file);
  return {
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: out },
  };
}

function notFound(what: string): Answer {
  return {
    case: "errorResponse",
    value: { errorCode: NOT_FOUND, errorMessage: `not found: ${what}` },
  };
}
