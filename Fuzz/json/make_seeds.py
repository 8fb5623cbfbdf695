#!/usr/bin/env python3
"""Writes the seed corpus of the JSON harness (Fuzz/json/seeds) from the contract's examples.

Every `example` and `examples[*].value` in schemas/openapi.yaml becomes a seed, compact and indented;
a few bodies the examples do not show (a batch of every message kind, replies, escapes, numbers at
the edges, deep nesting) are added by hand. Run it again when the contract's examples change:

    python3 Fuzz/json/make_seeds.py
"""
import hashlib
import json
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent

HAND_WRITTEN = [
    {"messages": [
        {"type": "prepare", "txid": "t-1", "coordinator": "http://127.0.0.1:8080",
         "payload": {"op": "debit", "account": "alice", "amount": 100}, "onePhase": True},
        {"type": "commit", "txid": "t-2"},
        {"type": "abort", "txid": "t:3"},
    ]},
    {"replies": [
        {"type": "prepare", "txid": "t-1", "vote": "yes"},
        {"type": "prepare", "txid": "t-4", "vote": "no", "reason": "insufficient funds"},
        {"type": "prepare", "txid": "t-5", "outcome": "committed"},
        {"type": "commit", "txid": "t-2", "state": "committed"},
        {"type": "abort", "txid": "t-3", "state": "unknown"},
        {"type": "error", "txid": "t-6", "error": {"code": "invalid_value", "message": "m", "field": "payload"}},
    ]},
    {"transactions": [
        {"id": "a.b", "branches": [{"participant": "http://a:1/", "payload": [1, 2.5e-3, None]}], "timeoutMs": 5000},
        {"branches": [{"participant": "https://[::1]:9001/p", "payload": "caf\u00e9 \U0001F600"}], "wait": "completion"},
    ]},
    {"txid": "t-1", "coordinator": "http://127.0.0.1:8080", "payload": {"nested": {"a": [[{}], []]}}},
    {"txid": "t-1"},
    {"txid": "t-1", "vote": "no", "reason": "\u0000\u001f\"\\/"},
    {"id": "t-1", "outcome": "pending"},
    {"index": 0, "id": "t-1", "error": {"code": "outcome_unknown", "message": "ask again"}, "status": 504},
]

RAW = [
    b'{"id":"x","branches":[{"participant":"http://a","payload":-0.0e+00}],"timeoutMs":3600000}',
    b'{"id":"x","branches":[{"participant":"http://a","payload":"\\ud83d\\ude00\\u00e9\\n"}]}',
    b'{"timeoutMs":9223372036854775808}',
    b'[' * 127 + b']' * 127,
    b' \t\r\n{ "txid" : "t" , "state" : "committed" } ',
]


def examples(node):
    """Every example value under `node`, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "example":
                yield value
            elif key == "examples" and isinstance(value, dict):
                for item in value.values():
                    if isinstance(item, dict) and "value" in item:
                        yield item["value"]
            else:
                yield from examples(value)
    elif isinstance(node, list):
        for item in node:
            yield from examples(item)


def main():
    document = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text())
    seeds = HERE / "seeds"
    seeds.mkdir(exist_ok=True)
    for old in seeds.glob("*.json"):
        old.unlink()
    bodies = []
    for value in list(examples(document)) + HAND_WRITTEN:
        if isinstance(value, (dict, list)):
            bodies.append(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            bodies.append(json.dumps(value, indent=1).encode())
    bodies += RAW
    for body in dict.fromkeys(bodies):
        name = hashlib.sha1(body).hexdigest()[:16]
        (seeds / f"{name}.json").write_bytes(body)
    print(f"{len(set(bodies))} seeds in {seeds.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
