"""uvicorn.run with the loop named by the second argument; the port is the first."""

import sys

import uvicorn

uvicorn.run('asgi_app:app', host='127.0.0.1', port=int(sys.argv[1]), loop=sys.argv[2],
            log_level='warning')
