"""ferroloop: asyncio's event loop (PEP 3156), written in Rust.

    import ferroloop
    ferroloop.run(main())                                       # like asyncio.run
    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)  # Python 3.12+
    ferroloop.install()                                         # policy, for old code
"""

from ._ferroloop import Handle, TimerHandle, __version__
from ._loop import Loop
from ._metrics import LagStats, LoopMetrics, SlowCallback
from ._policy import EventLoopPolicy, install, new_event_loop, run

# The public classes say they are ferroloop's, not a private module's
# (reprs, `type(loop).__module__`, pickling by reference).
for _cls in (Loop, EventLoopPolicy, LoopMetrics, LagStats, SlowCallback):
    _cls.__module__ = __name__
del _cls

__all__ = ('Loop', 'Handle', 'TimerHandle', 'EventLoopPolicy', 'install',
           'new_event_loop', 'run', 'LoopMetrics', 'LagStats', 'SlowCallback')
