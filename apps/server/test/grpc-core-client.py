"""gRPC C-core as a client Switchboard did not write: Debian's python3-grpcio (C-core under a thin
Python layer) and python3-protobuf, with no generated code.

Usage: python3 grpc-core-client.py TARGET IMAGE < calls.json

TARGET is host:port (h2c). IMAGE is a FileDescriptorSet from `buf build -o image.binpb`; message
classes are built from it at run time (descriptor_pool + message_factory) and every call goes
through a generic stub (channel.unary_unary / unary_stream with the method's path).

stdin is a JSON list of calls:
  {"name": str, "path": "/pkg.Service/Method", "kind": "unary" | "server_stream",
   "request": {...proto3 JSON...}, "requestType"?: "pkg.Msg", "responseType"?: "pkg.Msg",
   "metadata"?: [[key, value], ...], "timeout"?: seconds}
requestType/responseType default to the method's own types (an unknown method needs both).

stdout: one JSON line per call, in order:
  {"name": str, "code": "OK" | "UNIMPLEMENTED" | …, "details": str, "messages": int}
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def load_pool(image_path):
    with open(image_path, "rb") as f:
        image = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    # buf writes the files in dependency order, imports first.
    for file in image.file:
        pool.Add(file)
    return pool


def message_class(pool, full_name):
    descriptor = pool.FindMessageTypeByName(full_name)
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:  # protobuf >= 4.22
        return get(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def types_of(pool, call):
    request_type = call.get("requestType")
    response_type = call.get("responseType")
    if request_type is None or response_type is None:
        service, method = call["path"].lstrip("/").split("/")
        desc = pool.FindServiceByName(service).methods_by_name[method]
        request_type = request_type or desc.input_type.full_name
        response_type = response_type or desc.output_type.full_name
    return message_class(pool, request_type), message_class(pool, response_type)


def run(channel, pool, call):
    request_class, response_class = types_of(pool, call)
    request = json_format.ParseDict(call.get("request", {}), request_class())
    kwargs = {"metadata": [tuple(kv) for kv in call.get("metadata", [])]}
    if "timeout" in call:
        kwargs["timeout"] = call["timeout"]
    serializer = request_class.SerializeToString
    deserializer = response_class.FromString
    messages = 0
    try:
        if call["kind"] == "unary":
            stub = channel.unary_unary(
                call["path"], request_serializer=serializer, response_deserializer=deserializer
            )
            stub(request, **kwargs)
            messages = 1
        else:
            stub = channel.unary_stream(
                call["path"], request_serializer=serializer, response_deserializer=deserializer
            )
            for _ in stub(request, **kwargs):
                messages += 1
        return {"name": call["name"], "code": "OK", "details": "", "messages": messages}
    except grpc.RpcError as err:
        return {
            "name": call["name"],
            "code": err.code().name,
            "details": err.details() or "",
            "messages": messages,
        }


def main():
    target, image_path = sys.argv[1], sys.argv[2]
    pool = load_pool(image_path)
    calls = json.load(sys.stdin)
    with grpc.insecure_channel(target) as channel:
        for call in calls:
            print(json.dumps(run(channel, pool, call)), flush=True)


if __name__ == "__main__":
    main()
