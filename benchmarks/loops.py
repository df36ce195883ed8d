"""The loops under comparison, by name, so every benchmark builds them one way.

Each library is imported only when asked for: a measurement process then pays
for (and is perturbed by) only the loop it measures.
"""

import asyncio
import sys

# rloop is optional: measured only when asked for (--loops ...,rloop) and
# installed. zuvloop exists for Python 3.14 and later only, where it joins
# the default set. ferroloop-metrics is ferroloop with enable_metrics() on
# (default slow-callback threshold), to measure what metrics cost.
NAMES = ('asyncio', 'uvloop', 'ferroloop', 'zuvloop', 'rloop', 'ferroloop-metrics')
DEFAULT = ('asyncio', 'uvloop', 'ferroloop') + (('zuvloop',) if sys.version_info >= (3, 14) else ())


def new_loop(name):
    """A new, unstarted event loop of the named kind."""
    if name == 'asyncio':
        # Explicit rather than via the policy: the stock epoll selector loop.
        return asyncio.SelectorEventLoop()
    if name == 'uvloop':
        import uvloop
        return uvloop.new_event_loop()
    if name == 'ferroloop':
        import ferroloop
        return ferroloop.new_event_loop()
    if name == 'ferroloop-metrics':
        import ferroloop
        loop = ferroloop.new_event_loop()
        loop.enable_metrics()
        return loop
    if name == 'zuvloop':
        import zuvloop
        return zuvloop.new_event_loop()
    if name == 'rloop':
        import rloop
        return rloop.new_event_loop()
    raise ValueError(f'unknown loop {name!r}; expected one of {", ".join(NAMES)}')


def available(name):
    """None when the loop can be imported, else the reason it cannot."""
    if name == 'asyncio':
        return None
    try:
        __import__(name.partition('-')[0])
    except ImportError as exc:
        return str(exc)
    return None
