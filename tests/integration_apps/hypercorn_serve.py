"""hypercorn's serve() on ferroloop.run, stopping on SIGINT/SIGTERM; the port is the first argument."""

import asyncio
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

import ferroloop
from asgi_app import app


async def main():
    config = Config()
    config.bind = [f'127.0.0.1:{sys.argv[1]}']
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


ferroloop.run(main())
