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

def _settle(loop: asyncio.AbstractEventLoop) -> "tuple[asyncio.Future[Any], Any]":
    """A future of `loop`, and the callback that settles it from any thread."""
    future: "asyncio.Future[Any]" = loop.create_future()

    def set_result(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def callback(value: Any) -> None:
        loop.call_soon_threadsafe(set_result, value)

    return future, callback


class Client(_native.Client):
    """A Vexil client. See the package README for every option.

    Variation calls answer at once from memory. Methods that wait (`wait_for_initialization`,
    `identify`, `flush`, `close`) release the GIL. Their `*_async` forms wait on the client's
    own thread and settle an asyncio future: the event loop is never blocked, and no executor
    thread waits (except `close_async`, which stops the client's thread).
    """

    __slots__ = ()

    async def wait_for_initialization_async(self, timeout: float = 5.0) -> Status:
        """`wait_for_initialization`, awaitable."""
        future, callback = _settle(asyncio.get_running_loop())
        self._when_initialized(timeout, callback)
        result: Status = await future
        return result

    async def identify_async(self, context: ContextLike, timeout: float = 5.0) -> bool:
        """`identify`, awaitable."""
        future, callback = _settle(asyncio.get_running_loop())
        self._when_identified(context, timeout, callback)
        result: bool = await future
        return result

    async def flush_async(self, timeout: float = 5.0) -> bool:
        """`flush`, awaitable."""
        future, callback = _settle(asyncio.get_running_loop())
        self._when_flushed(timeout, callback)
        result: bool = await future
        return result

    async def close_async(self) -> None:
        """`close`, awaitable."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc_info: object) -> Optional[bool]:
        await self.close_async()
        return None
