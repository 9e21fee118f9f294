#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets that read text or protobuf from the conformance
vectors: their rulesets, their contexts, and valid requests built from them (protobuf written by hand here, so that
seeding needs nothing but Python). The fuzzers grow the corpus from these; `cargo fuzz cmin`
keeps it small before it is committed. (The structured targets, `http_requests` and
`c_abi`, start from nothing.)

    python3 fuzz/seed.py
"""
import hashlib
import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "conformance" / "vectors"


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def text(number, value):
    data = value.encode() if isinstance(value, str) else value
    return field(number, 2, varint(len(data)) + data)


def number(number, value):
    return field(number, 0, varint(value))


def double(number, value):
    return field(number, 1, struct.pack("<d", value))


def value_message(value):
    """A google.protobuf.Value."""
    if value is None:
        return number(1, 0)
    if isinstance(value, bool):
        return number(4, int(value))
    if isinstance(value, (int, float)):
        return double(2, float(value))
    if isinstance(value, str):
        return text(3, value)
    if isinstance(value, list):
        return text(6, b"".join(text(1, value_message(v)) for v in value))
    return text(5, struct_message(value))


def struct_message(obj):
    return b"".join(text(1, text(1, k) + text(2, value_message(v))) for k, v in obj.items())


def context_message(context):
    out = b""
    if "kind" in context:
        out += text(1, context["kind"])
    if "key" in context:
        out += text(2, str(context["key"]))
    if isinstance(context.get("attributes"), dict):
        out += text(3, struct_message(context["attributes"]))
    for part in context.get("contexts", []):
        if isinstance(part, dict):
            out += text(4, context_message(part))
    return out


def write(target, data):
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    for path in sorted(VECTORS.glob("*.json")):
        vectors = json.loads(path.read_text())
        ruleset = {"flags": vectors.get("flags", []), "segments": vectors.get("segments", [])}
        ruleset_json = json.dumps(ruleset)
        write("ruleset_json", ruleset_json)
        # ImportEnvironment (RPC 6) of the ruleset into the server's own environment.
        write("grpc_requests", bytes([6]) + text(3, ruleset_json))
        for case in vectors.get("cases", [])[:20]:
            context = case.get("context")
            if not isinstance(context, dict):
                continue
            write("context_json", json.dumps(context))
            message = context_message(context)
            flag = case.get("flag", "")
            # Evaluate (11), EvaluateAll (12), Publish (10) of a track event, EraseContext (9).
            write("grpc_requests", bytes([11]) + text(1, flag) + text(2, message)
                  + text(3, value_message(case.get("default"))))
            write("grpc_requests", bytes([12]) + text(1, message))
            track = text(2, "purchase") + text(3, message) + double(4, 9.5)
            write("grpc_requests", bytes([10]) + text(1, f"seed-{flag}") + text(2, "fuzz")
                  + text(3, "0") + text(5, track))
            if isinstance(context.get("key"), str) and context["key"]:
                write("grpc_requests", bytes([9]) + text(4, context["key"]))
    # CreateFlag (0) and CreateEnvironment (7) with the fields that matter filled in.
    write("grpc_requests", bytes([0]) + text(2, "seeded") + number(5, 1)
          + text(6, value_message(True)) + text(6, value_message(False)))
    write("grpc_requests", bytes([7]) + text(2, "staging") + text(5, "https://*.example.com")
          + number(6, 30))


if __name__ == "__main__":
    main()
