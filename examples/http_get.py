"""An HTTP/1.1 GET client on ``asyncio.open_connection``: status line, headers, body.

    python examples/http_get.py http://127.0.0.1:8000/               # body to stdout
    python examples/http_get.py -i http://127.0.0.1:8000/a /b /c     # -i: status and headers too

The request is written with ``writer.write``; the response is read the way
HTTP/1.1 frames it: ``readline()`` for the status line and each header, then
the body by ``Content-Length`` (``readexactly``), by ``Transfer-Encoding:
chunked`` (a hex size line, that many bytes, CRLF, until a zero-size chunk),
or, failing both, until the server closes the connection.

Several URLs (a URL starting with ``/`` means the previous host) are fetched
one after another over one keep-alive connection while they name the same
host and port and the server keeps it open; the last request says
``Connection: close``. For each response a summary goes to stderr: ``GET URL
-> STATUS REASON, N bytes, connection K``. The exit status is 0, or 22 with
``--fail`` when a status is 400 or more (as ``curl --fail``), or 1 on a
protocol error or when a response takes longer than ``--timeout``.
"""

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

import ferroloop

MAX_LINE = 64 * 1024


class ProtocolError(Exception):
    pass


def split_url(url, previous):
    if url.startswith('/') and previous is not None:
        return previous[0], previous[1], url
    parts = urlsplit(url)
    if parts.scheme != 'http' or not parts.hostname:
        raise SystemExit(f'http_get: only http://HOST[:PORT]/PATH URLs are supported, not {url!r}')
    target = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
    return parts.hostname, parts.port or 80, target


async def read_line(reader):
    line = await reader.readline()
    if not line.endswith(b'\n'):
        raise ProtocolError('connection closed in the middle of the response head')
    return line.rstrip(b'\r\n').decode('latin-1')


async def read_head(reader):
    status_line = await read_line(reader)
    version, _, rest = status_line.partition(' ')
    code, _, reason = rest.partition(' ')
    if not version.startswith('HTTP/1.') or not code.isdigit():
        raise ProtocolError(f'not an HTTP/1.x status line: {status_line!r}')
    headers = []
    while True:
        line = await read_line(reader)
        if not line:
            return version, int(code), reason, status_line, headers
        name, sep, value = line.partition(':')
        if not sep:
            raise ProtocolError(f'malformed header line {line!r}')
        headers.append((name.strip(), value.strip()))


async def read_chunked(reader):
    chunks = []
    while True:
        size_line = await read_line(reader)
        try:
            size = int(size_line.split(';', 1)[0], 16)
        except ValueError:
            raise ProtocolError(f'bad chunk size line {size_line!r}') from None
        if size == 0:
            while await read_line(reader):      # trailers, up to the empty line
                pass
            return b''.join(chunks)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b'\r\n':
            raise ProtocolError('chunk not followed by CRLF')


async def fetch(reader, writer, host, port, target, last):
    """One request/response; returns (code, reason, status_line, headers, body, reusable)."""
    host_header = host if port == 80 else f'{host}:{port}'
    writer.write((f'GET {target} HTTP/1.1\r\n'
                  f'Host: {host_header}\r\n'
                  f'User-Agent: ferroloop-example/1\r\n'
                  f'Accept: */*\r\n'
                  f'Connection: {"close" if last else "keep-alive"}\r\n'
                  f'\r\n').encode('latin-1'))
    await writer.drain()
    version, code, reason, status_line, headers = await read_head(reader)
    fields = {name.lower(): value for name, value in headers}
    connection = fields.get('connection', '').lower()
    reusable = not last and (connection == 'keep-alive' if version == 'HTTP/1.0'
                             else connection != 'close')
    if code in (204, 304) or 100 <= code < 200:
        body = b''
    elif 'chunked' in fields.get('transfer-encoding', '').lower():
        body = await read_chunked(reader)
    elif 'content-length' in fields:
        body = await reader.readexactly(int(fields['content-length']))
    else:
        body = await reader.read()              # delimited by the server closing
        reusable = False
    return code, reason, status_line, headers, body, reusable


async def get_all(urls, include, timeout):
    out = sys.stdout.buffer
    worst = 0
    conn = None         # (host, port, reader, writer, number)
    opened = 0
    previous = None
    try:
        for i, url in enumerate(urls):
            host, port, target = previous = split_url(url, previous)
            last_here = i + 1 == len(urls) or split_url(urls[i + 1], previous)[:2] != (host, port)
            if conn is None or conn[:2] != (host, port):
                if conn is not None:
                    conn[3].close()
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=MAX_LINE), timeout)
                opened += 1
                conn = (host, port, reader, writer, opened)
            code, reason, status_line, headers, body, reusable = await asyncio.wait_for(
                fetch(conn[2], conn[3], host, port, target, last_here), timeout)
            if include:
                out.write(status_line.encode('latin-1') + b'\r\n')
                out.write(b''.join(f'{n}: {v}\r\n'.encode('latin-1') for n, v in headers))
                out.write(b'\r\n')
            out.write(body)
            out.flush()
            print(f'GET http://{host}:{port}{target} -> {code} {reason}, {len(body)} bytes, '
                  f'connection {conn[4]}', file=sys.stderr, flush=True)
            worst = max(worst, code)
            if not reusable:
                conn[3].close()
                await conn[3].wait_closed()
                conn = None
    finally:
        if conn is not None:
            conn[3].close()
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('urls', nargs='+', metavar='URL')
    parser.add_argument('-i', '--include', action='store_true',
                        help='print the status line and headers before each body')
    parser.add_argument('--fail', action='store_true', help='exit 22 if a status is >= 400')
    parser.add_argument('--timeout', type=float, default=30.0, help='per response, seconds')
    args = parser.parse_args(argv)
    try:
        worst = ferroloop.run(get_all(args.urls, args.include, args.timeout))
    except (ProtocolError, asyncio.IncompleteReadError, OSError) as exc:
        print(f'http_get: {exc!r}', file=sys.stderr)
        return 1
    except asyncio.TimeoutError:
        print(f'http_get: no response within {args.timeout}s', file=sys.stderr)
        return 1
    return 22 if args.fail and worst >= 400 else 0


if __name__ == '__main__':
    sys.exit(main())
