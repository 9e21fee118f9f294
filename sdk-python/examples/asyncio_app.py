"""An asyncio application with a mobile key: values evaluated by the server for the
identified context, waited for without blocking the event loop.

    VEXIL_SDK_KEY=vxl-mobile-... python asyncio_app.py
"""

from __future__ import annotations

import asyncio
import os

import vexil


async def main() -> None:
    async with vexil.Client(
        os.environ["VEXIL_SDK_KEY"],
        endpoint=os.environ.get("VEXIL_ENDPOINT", "http://127.0.0.1:50051"),
        context={"kind": "user", "key": "alice"},
    ) as client:
        status = await client.wait_for_initialization_async(timeout=5)
        print(f"status: {status.state}")
        for key, detail in client.all_flags({"key": "alice"}).items():
            print(f"alice: {key} = {detail.value!r}")
        bob = vexil.Context("bob")
        if await client.identify_async(bob, timeout=5):
            print(f"bob: new-checkout = {client.bool_variation('new-checkout', bob, False)}")


if __name__ == "__main__":
    asyncio.run(main())
