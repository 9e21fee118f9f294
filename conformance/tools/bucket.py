#!/usr/bin/env python3
"""Print the murmur3_v1 hash and bucket of a bucket value.

Usage:
    bucket.py SALT VALUE [VALUE ...]     hash "SALT:VALUE" for each value
    bucket.py --layer LAYER VALUE ...    an experiment's layer bucket (salt "layer/LAYER")
    bucket.py --raw STRING ...           hash STRING as it is
    bucket.py ... --weights W0,W1,...    also show which rollout entry the bucket selects

Example:
    $ python3 bucket.py rollout-flag alice bob
    rollout-flag:alice  hash=... bucket=...

bucket = (hash * 100000) >> 32 (unsigned 64-bit), see conformance/SCHEMA.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from murmur3 import bucket_of_hash, hash_input, layer_salt, murmur3_x86_32  # noqa: E402


def pick(bucket: int, weights: list[int]) -> int | None:
    """Index into the rollout's `variations` list that a bucket selects."""
    total = 0
    for i, w in enumerate(weights):
        total += w
        if total > bucket:
            return i
    return None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--layer", metavar="LAYER", help="use the layer salt layer/LAYER")
    g.add_argument("--raw", action="store_true", help="hash the arguments as they are")
    p.add_argument("--weights", help="comma-separated rollout weights, e.g. 50000,50000")
    p.add_argument("args", nargs="+")
    a = p.parse_args(argv)

    if a.raw:
        inputs = list(a.args)
    elif a.layer is not None:
        inputs = [hash_input(layer_salt(a.layer), v) for v in a.args]
    else:
        if len(a.args) < 2:
            p.error("give a SALT and at least one VALUE")
        salt, values = a.args[0], a.args[1:]
        inputs = [hash_input(salt, v) for v in values]

    weights = [int(w) for w in a.weights.split(",")] if a.weights else None
    if weights is not None and sum(weights) != 100_000:
        print(f"warning: weights sum to {sum(weights)}, not 100000", file=sys.stderr)

    for s in inputs:
        h = murmur3_x86_32(s)
        b = bucket_of_hash(h)
        line = f"{s}  hash={h} (0x{h:08x}) bucket={b}"
        if weights is not None:
            line += f" entry={pick(b, weights)}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
