"""No leak: creating and closing 10,000 clients leaves the process's memory flat."""

from __future__ import annotations

import gc
from pathlib import Path

import vexil


def rss_bytes() -> int:
    # Linux: resident pages from /proc (ru_maxrss would only ever grow).
    fields = Path("/proc/self/statm").read_text().split()
    import os
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def cycle(count: int, bootstrap: Path) -> None:
    context = vexil.Context("alice")
    for i in range(count):
        client = vexil.Client("vxl-server-memory", offline=True, bootstrap=bootstrap)
        client.on_change(lambda change: None)
        assert client.bool_variation("checkout", context, False) is True
        assert client.bool_variation("checkout", {"key": f"user-{i}"}, False) is True
        client.track("purchase", context, 1.0)
        client.close()


def test_ten_thousand_clients_leave_memory_flat(bootstrap_file: Path) -> None:
    # Warm up allocator arenas and caches first, then measure the next 10,000.
    cycle(500, bootstrap_file)
    gc.collect()
    before = rss_bytes()
    cycle(10_000, bootstrap_file)
    gc.collect()
    grown = rss_bytes() - before
    # A leak of even one small allocation per client (a runtime, a thread stack, the
    # ruleset) would be tens of megabytes here.
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 10,000 clients"
