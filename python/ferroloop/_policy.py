"""How programs get a ferroloop: the policy, ``new_event_loop``, ``install`` and ``run``."""

import asyncio
import sys

from asyncio import coroutines, events

from ._loop import Loop


def new_event_loop():
    """A new, unstarted ferroloop ``Loop``."""
    return Loop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, handing out ferroloop loops."""

    def _loop_factory(self):
        return Loop()

    def __repr__(self):
        return f'<{self.__class__.__name__} ferroloop>'


def install():
    """Makes ferroloop the loop that ``asyncio.new_event_loop()`` / ``asyncio.run()`` give."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def _cancel_all_tasks(loop):
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler({
                'message': 'unhandled exception during asyncio.run() shutdown',
                'exception': task.exception(),
                'task': task,
            })


def run(main, *, debug=None):
    """``asyncio.run(main)`` on a new ferroloop loop."""
    if sys.version_info >= (3, 12):
        # asyncio.run itself: its checks, messages and shutdown, whatever the Python.
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    # asyncio.run's own first check: a Runner entered inside a running loop
    # would fail on closing instead, with another message.
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    # Python 3.9 / 3.10 have no Runner: the same steps by hand.
    if not coroutines.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
