"""How programs get a ferroloop: the policy, ``new_event_loop``, ``install`` and ``run``."""

import asyncio
import sys

from asyncio import events

from ._loop import Loop

# 3.14 deprecated the policy system (removal planned for 3.16): looking up
# asyncio.DefaultEventLoopPolicy and calling set_event_loop_policy() warn there.
# ferroloop takes the same class and does the same setting from where asyncio
# keeps them, so that importing ferroloop and install() warn about nothing.
if sys.version_info >= (3, 14):
    from asyncio.unix_events import _DefaultEventLoopPolicy
    _set_event_loop_policy = events._set_event_loop_policy
else:
    _DefaultEventLoopPolicy = asyncio.DefaultEventLoopPolicy
    _set_event_loop_policy = asyncio.set_event_loop_policy


def new_event_loop():
    """A new, unstarted ferroloop ``Loop``."""
    return Loop()


class EventLoopPolicy(_DefaultEventLoopPolicy):
    """asyncio's default policy, handing out ferroloop loops."""

    def _loop_factory(self):
        return Loop()

    def __repr__(self):
        return f'<{self.__class__.__name__} ferroloop>'


def install():
    """Makes ferroloop the loop that ``asyncio.new_event_loop()`` / ``asyncio.run()`` give.

    Through the event-loop policy, which exists up to Python 3.15; the lasting
    way is ``asyncio.run(main(), loop_factory=ferroloop.new_event_loop)``.
    """
    _set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """``asyncio.run(main)`` on a new ferroloop loop."""
    if sys.version_info >= (3, 12):
        # asyncio.run itself: its checks, messages and shutdown, whatever the Python.
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    # asyncio.run's own first check: a Runner entered inside a running loop
    # would fail on closing instead, with another message.
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
