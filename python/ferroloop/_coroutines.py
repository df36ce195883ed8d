"""asyncio's "is this a coroutine function?" test, as the running asyncio itself calls it.

Python 3.14 deprecated the public ``asyncio.iscoroutinefunction`` (calling it
warns) and asyncio's own code moved to a private twin that also honours the
``_is_coroutine`` marker; before 3.14 there is only the public one.
"""

from asyncio import coroutines

iscoroutinefunction = getattr(coroutines, '_iscoroutinefunction', coroutines.iscoroutinefunction)
