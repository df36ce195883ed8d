"""ferroloop: asyncio's event loop (PEP 3156), written in Rust.

    import ferroloop
    ferroloop.run(main())                                       # like asyncio.run
    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)  # Python 3.12+
    ferroloop.install()                                         # policy, for old code
"""

from ._ferroloop import Handle, TimerHandle
from .loop import Loop
from .policy import EventLoopPolicy, install, new_event_loop, run

__all__ = ('Loop', 'Handle', 'TimerHandle', 'EventLoopPolicy', 'install',
           'new_event_loop', 'run')
