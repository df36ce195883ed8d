"""uvicorn (httptools) serving a minimal ASGI app, on any loop: the HTTP server people deploy.

    python benchmarks/asgi_server.py --loop ferroloop

Every request gets the same small 200 response (the body stream_server.py's
HTTP kind answers, so the same load client checks it). Listens on 127.0.0.1
(ephemeral port; loopback only), prints {"port": N} and serves until its
standard input closes, then prints {"requests": R, "loop": "module.Class"}
and exits 0; the harness checks R against its client's count and that the
requests ran on the loop it asked for. ``--timeout`` bounds the whole run:
past it the server exits 2 rather than hang.
"""

import argparse
import asyncio
import json
import os
import socket
import sys

import uvicorn

from loops import new_loop

BODY = b'Hello, World!'
HEADERS = [(b'content-type', b'text/plain'), (b'content-length', str(len(BODY)).encode())]


class App:
    def __init__(self):
        self.requests = 0
        self.loop_class = None

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return
        self.requests += 1
        if self.loop_class is None:
            cls = type(asyncio.get_running_loop())
            self.loop_class = f'{cls.__module__}.{cls.__qualname__}'
        await send({'type': 'http.response.start', 'status': 200, 'headers': HEADERS})
        await send({'type': 'http.response.body', 'body': BODY})


async def serve(app):
    loop = asyncio.get_running_loop()
    # As create_server would make it: with proto IPPROTO_TCP, the only kind
    # asyncio sets TCP_NODELAY on (a proto-0 socket's responses would wait
    # for the client's delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(('127.0.0.1', 0))
    sock.listen(2048)   # clients may connect at once; uvicorn accepts when it starts
    config = uvicorn.Config(app, loop='none', http='httptools', lifespan='off',
                            access_log=False, log_level='warning')
    server = uvicorn.Server(config)
    # uvicorn installs its own signal handlers; the harness stops it by
    # closing stdin instead.
    stdin = sys.stdin.fileno()

    def stdin_readable():
        if not os.read(stdin, 4096):
            loop.remove_reader(stdin)
            server.should_exit = True

    loop.add_reader(stdin, stdin_readable)
    print(json.dumps({'port': sock.getsockname()[1]}), flush=True)
    await server.serve(sockets=[sock])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--loop', required=True)
    p.add_argument('--timeout', type=float, default=60.0)
    args = p.parse_args(argv)

    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    app = App()
    try:
        loop.run_until_complete(asyncio.wait_for(serve(app), args.timeout))
    except asyncio.TimeoutError:
        print(f'asgi_server ({args.loop}): no clean finish within {args.timeout}s', file=sys.stderr)
        return 2
    finally:
        loop.close()
    print(json.dumps({'requests': app.requests, 'loop': app.loop_class}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
