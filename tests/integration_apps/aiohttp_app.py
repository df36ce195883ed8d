"""An aiohttp app that answers every request with the class of the loop serving it and its pid."""

import os

from aiohttp import web

from asgi_app import loop_name


async def handler(request):
    return web.Response(text=f'{loop_name()} {os.getpid()}')


app = web.Application()
app.router.add_get('/', handler)
