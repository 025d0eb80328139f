"""Checks crates/serve/proto/grpc_service.proto against the descriptors tritonclient was generated
from (tritonclient.grpc.service_pb2 / model_config_pb2, the authority on the wire format): every
message, field, enum value and RPC millrace declares must have the same name, number, type and
cardinality there (millrace declares a subset; nothing it declares may differ).

usage: test_proto.py [PATH/TO/grpc_service.proto]
"""

import os
import re
import sys

from google.protobuf import descriptor
from tritonclient.grpc import model_config_pb2, service_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Failures  # noqa: E402

SCALARS = {
    "double": descriptor.FieldDescriptor.TYPE_DOUBLE, "float": descriptor.FieldDescriptor.TYPE_FLOAT,
    "int64": descriptor.FieldDescriptor.TYPE_INT64, "uint64": descriptor.FieldDescriptor.TYPE_UINT64,
    "int32": descriptor.FieldDescriptor.TYPE_INT32, "uint32": descriptor.FieldDescriptor.TYPE_UINT32,
    "bool": descriptor.FieldDescriptor.TYPE_BOOL, "string": descriptor.FieldDescriptor.TYPE_STRING,
    "bytes": descriptor.FieldDescriptor.TYPE_BYTES,
}


def parse(text):
    """{full message name: [(label, type, name, number)]}, {enum: {value: number}}, [(rpc, in, out)]."""
    text = re.sub(r"//[^\n]*", "", text)
    messages, enums, rpcs = {}, {}, []
    stack = []  # (kind, name)
    for tok in re.finditer(r"(message|enum|service|oneof)\s+(\w+)\s*\{|\}|rpc\s+(\w+)\s*\(\s*(stream\s+)?(\w+)\s*\)\s*returns\s*\(\s*(stream\s+)?(\w+)\s*\)\s*(?:\{\s*\}|;)|([^;{}]+);", text):
        if tok.group(1):
            stack.append((tok.group(1), tok.group(2)))
            if tok.group(1) == "message":
                messages[".".join(n for k, n in stack if k == "message")] = []
            if tok.group(1) == "enum":
                enums[tok.group(2)] = {}
        elif tok.group(0) == "}":
            stack.pop()
        elif tok.group(3):
            rpcs.append((tok.group(3), tok.group(5), tok.group(7), bool(tok.group(4)), bool(tok.group(6))))
        elif tok.group(8) and stack:
            stmt = " ".join(tok.group(8).split())
            kind = stack[-1][0]
            msg = ".".join(n for k, n in stack if k == "message")
            if kind == "enum":
                m = re.match(r"(\w+) = (\d+)", stmt)
                if m:
                    enums[stack[-1][1]][m.group(1)] = int(m.group(2))
            elif kind in ("message", "oneof"):
                m = re.match(r"(repeated )?(map<\s*\w+\s*,\s*\w+\s*>|[\w.]+) (\w+) = (\d+)", stmt)
                if m:
                    label = "map" if m.group(2).startswith("map") else ("repeated" if m.group(1) else "single")
                    messages[msg].append((label, m.group(2), m.group(3), int(m.group(4))))
    return messages, enums, rpcs


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "crates", "serve", "proto", "grpc_service.proto")
    messages, enums, rpcs = parse(open(path).read())
    f = Failures()
    pools = [service_pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR]

    def find(name):
        for fd in pools:
            top, *rest = name.split(".")
            d = fd.message_types_by_name.get(top)
            for r in rest:
                d = d.nested_types_by_name.get(r) if d else None
            if d:
                return d
        return None

    for msg, fields in messages.items():
        d = find(msg)
        if not f.check(d is not None, f"message {msg} exists in tritonclient"):
            continue
        for label, typ, name, number in fields:
            fd = d.fields_by_name.get(name)
            if not f.check(fd is not None, f"{msg}.{name} exists"):
                continue
            ok = fd.number == number
            if label == "map":
                ok = ok and fd.message_type is not None and fd.message_type.GetOptions().map_entry
            else:
                repeated = fd.label == descriptor.FieldDescriptor.LABEL_REPEATED
                ok = ok and repeated == (label == "repeated")
                if typ in SCALARS:
                    ok = ok and fd.type == SCALARS[typ]
                elif fd.message_type is not None:
                    ok = ok and fd.message_type.name == typ.split(".")[-1]
                else:
                    ok = ok and fd.enum_type is not None and fd.enum_type.name == typ.split(".")[-1]
            f.check(ok, f"{msg}.{name} = {number} ({label} {typ})")
    for enum, values in enums.items():
        e = model_config_pb2.DESCRIPTOR.enum_types_by_name.get(enum)
        if f.check(e is not None, f"enum {enum} exists"):
            f.check(all(e.values_by_name.get(k) is not None and e.values_by_name[k].number == v
                        for k, v in values.items()), f"enum {enum} values")
    svc = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for name, i, o, cs, ss in rpcs:
        m = svc.methods_by_name.get(name)
        f.check(m is not None and m.input_type.name == i and m.output_type.name == o,
                f"rpc {name}({i}) returns ({o})")
    f.check(len(messages) > 20 and len(rpcs) >= 8, f"parsed {len(messages)} messages and {len(rpcs)} rpcs")
    f.exit()


if __name__ == "__main__":
    main()
