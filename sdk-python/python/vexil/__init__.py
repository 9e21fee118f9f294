"""Vexil feature flags and experiments for Python.

A thin layer over Vexil's Rust SDK core: flags are evaluated in this process from data kept
current in the background (server keys), or served by the server for one context (client and
mobile keys). Evaluation never raises and never waits on the network.

    import vexil

    with vexil.Client("vxl-server-...", endpoint="http://127.0.0.1:50051") as client:
        client.wait_for_initialization(timeout=5)
        alice = vexil.Context("alice", attributes={"plan": "pro"})
        if client.bool_variation("new-checkout", alice, False):
            ...
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Union

from . import _native
from ._native import (
    ClientStartError,
    ConfigurationError,
    Context,
    EvaluationDetail,
    FlagChange,
    InternalError,
    InvalidContextError,
    Status,
    TestData,
    VexilError,
)

__version__: str = _native.__version__

ContextLike = Union[Context, "dict[str, Any]"]
"""A `vexil.Context`, or a dict of the canonical JSON shape."""

__all__ = [
    "Client",
    "ClientStartError",
    "ConfigurationError",
    "Context",
    "ContextLike",
    "EvaluationDetail",
    "FlagChange",
    "InternalError",
    "InvalidContextError",
    "Status",
    "TestData",
    "VexilError",
    "__version__",
]

class Client(_native.Client):
    """A Vexil client. See the package README for every option.

    Variation calls answer at once from memory. Methods that wait (`wait_for_initialization`,
    `identify`, `flush`, `close`) release the GIL; their `*_async` forms run them on the
    event loop's executor so that the loop is never blocked.
    """

    __slots__ = ()

    async def wait_for_initialization_async(self, timeout: float = 5.0) -> Status:
        """`wait_for_initialization`, awaitable."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.wait_for_initialization, timeout)

    async def identify_async(self, context: ContextLike, timeout: float = 5.0) -> bool:
        """`identify`, awaitable."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.identify, context, timeout)

    async def flush_async(self, timeout: float = 5.0) -> bool:
        """`flush`, awaitable."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.flush, timeout)

    async def close_async(self) -> None:
        """`close`, awaitable."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc_info: object) -> Optional[bool]:
        await self.close_async()
        return None
