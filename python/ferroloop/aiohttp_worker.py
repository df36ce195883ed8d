"""gunicorn serving an aiohttp app on ferroloop::

    gunicorn app:app -k ferroloop.aiohttp_worker.GunicornWebWorker

The counterpart of aiohttp's ``GunicornUVLoopWebWorker``.
"""

import asyncio

from aiohttp.worker import GunicornWebWorker as _AiohttpWorker
from gunicorn.workers.base import Worker as _BaseWorker

from ._policy import new_event_loop

__all__ = ('GunicornWebWorker',)


class GunicornWebWorker(_AiohttpWorker):
    """aiohttp's gunicorn worker, on a ferroloop loop."""

    def init_process(self):
        # aiohttp's own init_process, with ferroloop's loop in place of the
        # policy's: no process-wide policy to set (deprecated since 3.14).
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        _BaseWorker.init_process(self)
