"""A failed create_connection leaves its exception referred to by nothing of
the loop's (no finished future, no frame): libraries check this (anyio's
test_happy_eyeballs_refcycles, after CPython's gh-124859)."""

import asyncio
import gc
import socket
import types

from support import run


def _closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_failed_create_connection_leaves_the_exception_unreferenced(loop):
    port = _closed_port()

    caught = []   # not the task's result: the finished task would hold it

    async def fail():
        try:
            await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        except OSError as exc:
            caught.append(exc)

    gc.collect()
    gc.disable()
    try:
        run(loop, fail())
        (exc,) = caught
        assert isinstance(exc, ConnectionRefusedError)
        referrers = [r for r in gc.get_referrers(exc)
                     if r is not caught and not isinstance(r, types.FrameType)]
    finally:
        gc.enable()
    assert referrers == []
