"""Evaluate a flag with a server key, react to changes, record a metric.

    VEXIL_SDK_KEY=vxl-server-... VEXIL_ENDPOINT=http://127.0.0.1:50051 python quickstart.py
"""

from __future__ import annotations

import os

import vexil


def on_change(change: vexil.FlagChange) -> None:
    print(f"flags changed at version {change.version}: {', '.join(change.flag_keys)}")


def main() -> None:
    with vexil.Client(
        os.environ["VEXIL_SDK_KEY"],
        endpoint=os.environ.get("VEXIL_ENDPOINT", "http://127.0.0.1:50051"),
        cache_dir=os.environ.get("VEXIL_CACHE_DIR"),
    ) as client:
        status = client.wait_for_initialization(timeout=5)
        print(f"status: {status.state}, data from {client.source}")
        client.on_change(on_change)

        # Built once, reused for every call: the fastest form.
        alice = vexil.Context("alice", attributes={"plan": "pro", "country": "FR"})
        if client.bool_variation("new-checkout", alice, False):
            print("alice gets the new checkout")

        # A plain dict works too, in the same JSON shape as everywhere in Vexil.
        detail = client.variation_detail("new-checkout", {"key": "bob"}, False)
        print(f"bob: {detail.value} because {detail.reason}")

        client.track("checkout-completed", alice, 42.0)
    # Leaving the block closes the client, which sends pending events.


if __name__ == "__main__":
    main()
