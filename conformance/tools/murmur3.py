#!/usr/bin/env python3
"""MurmurHash3 x86_32 and the murmur3_v1 bucketing of the Vexil flag model.

A small, dependency-free implementation used to compute and check the
rollout and experiment expectations of the conformance vectors. It follows
Austin Appleby's public-domain reference (MurmurHash3_x86_32) and
conformance/SCHEMA.md ("Rollouts and the murmur3_v1 algorithm").

Run it directly to self-check against well-known test values (and against
the `mmh3` package when it is installed).
"""

from __future__ import annotations

import sys

_MASK32 = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593

BUCKET_SCALE = 100_000


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK32


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    h ^= h >> 16
    return h


def murmur3_x86_32(data: bytes | str, seed: int = 0) -> int:
    """Return the unsigned 32-bit MurmurHash3_x86_32 of `data`.

    A str is encoded as UTF-8 first.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    length = len(data)
    h = seed & _MASK32
    n_blocks = length // 4

    for i in range(n_blocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _C1) & _MASK32
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK32
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & _MASK32

    tail = data[4 * n_blocks :]
    k = 0
    rem = len(tail)
    if rem >= 3:
        k ^= tail[2] << 16
    if rem >= 2:
        k ^= tail[1] << 8
    if rem >= 1:
        k ^= tail[0]
        k = (k * _C1) & _MASK32
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK32
        h ^= k

    h ^= length
    return _fmix32(h)


def bucket_of_hash(h: int) -> int:
    """`(hash * 100000) >> 32` in unsigned 64-bit arithmetic: [0, 100000)."""
    return ((h & _MASK32) * BUCKET_SCALE) >> 32


def hash_input(salt: str, value: str) -> str:
    """The string that murmur3_v1 hashes: "{salt}:{bucket value}"."""
    return f"{salt}:{value}"


def bucket(salt: str, value: str) -> int:
    """The murmur3_v1 bucket of a bucket value under a salt."""
    return bucket_of_hash(murmur3_x86_32(hash_input(salt, value)))


def layer_salt(layer: str) -> str:
    """The salt of an experiment layer's bucket."""
    return f"layer/{layer}"


# Well-known MurmurHash3_x86_32 values: (input, seed, expected unsigned hash).
KNOWN_VALUES = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"a", 0x9747B28C, 0x7FA09EA6),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"abc", 0, 0xB3DD93FA),
    (b"abcd", 0, 0x43ED676A),
    (b"hello", 0, 0x248BFA47),
    (b"Hello, world!", 1234, 0xFAF6CDB3),
    (b"The quick brown fox jumps over the lazy dog", 0, 0x2E4FF723),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


def self_check(verbose: bool = False) -> list[str]:
    """Return a list of failures (empty when every check passes)."""
    failures = []
    for data, seed, expected in KNOWN_VALUES:
        got = murmur3_x86_32(data, seed)
        if got != expected:
            failures.append(f"murmur3({data!r}, seed={seed:#x}) = {got:#010x}, expected {expected:#010x}")
        elif verbose:
            print(f"ok  murmur3({data!r}, seed={seed:#x}) = {got:#010x}")
    # The bucket formula at its edges.
    for h, expected in [(0, 0), (0xFFFFFFFF, 99_999), (0x80000000, 50_000), (0x7FFFFFFF, 49_999)]:
        if bucket_of_hash(h) != expected:
            failures.append(f"bucket_of_hash({h:#x}) = {bucket_of_hash(h)}, expected {expected}")
    return failures


def cross_check_mmh3(samples: int = 2000, verbose: bool = False) -> list[str] | None:
    """Compare against the `mmh3` package if available; None when it is not installed."""
    try:
        import mmh3  # type: ignore
    except ImportError:
        return None
    import random

    rng = random.Random(20240601)
    failures = []
    inputs = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", "rollout-flag:alice".encode(), "ünïcödé:ключ".encode()]
    for _ in range(samples):
        n = rng.randrange(0, 40)
        inputs.append(bytes(rng.randrange(256) for _ in range(n)))
    for data in inputs:
        for seed in (0, 1, 0x9747B28C):
            ours = murmur3_x86_32(data, seed)
            theirs = mmh3.hash(data, seed, signed=False)
            if ours != theirs:
                failures.append(f"{data!r} seed={seed:#x}: ours {ours:#010x}, mmh3 {theirs:#010x}")
    if verbose:
        print(f"cross-checked {len(inputs) * 3} hashes against mmh3 {getattr(mmh3, '__version__', '')}".rstrip())
    return failures


def main() -> int:
    failures = self_check(verbose=True)
    cross = cross_check_mmh3(verbose=True)
    if cross is None:
        print("mmh3 not installed: cross-check skipped (pip install mmh3)")
    else:
        failures += cross
    for f in failures:
        print("FAIL", f)
    print("murmur3 self-check:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
