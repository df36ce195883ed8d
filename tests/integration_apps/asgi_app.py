"""An ASGI app that answers every request with the class of the loop serving it and its pid."""

import asyncio
import os


def loop_name():
    loop = type(asyncio.get_running_loop())
    return f'{loop.__module__}.{loop.__qualname__}'


async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    body = f'{loop_name()} {os.getpid()}'.encode()
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': body})
