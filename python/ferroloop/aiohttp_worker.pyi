import asyncio

from aiohttp.worker import GunicornWebWorker as _AiohttpWorker

__all__ = ('GunicornWebWorker',)

class GunicornWebWorker(_AiohttpWorker):
    """aiohttp's gunicorn worker, on a ferroloop loop."""

    loop: asyncio.AbstractEventLoop

    def init_process(self) -> None:
        """Gives the worker a new ferroloop loop, then starts it as gunicorn does."""
