"""An HTTPS GET client: ``http_get.py``'s HTTP/1.1 over a verified TLS connection.

    python examples/https_get.py https://example.org/                    # the system's CAs
    python examples/https_get.py --cafile cert.pem https://127.0.0.1:8443/hello
    python examples/https_get.py --cafile cert.pem --servername localhost https://127.0.0.1:8443/

``asyncio.open_connection(host, port, ssl=ctx, server_hostname=NAME)``
connects and then does the TLS handshake before it returns: by then the
server's certificate has been checked against the trusted CAs (``--cafile``,
else the system's) and against NAME (``--servername``, else the URL's host).
From there on the reader and writer carry plaintext; the TLS records are the
transport's business. The request and the response parsing are
``http_get.py``'s; here one URL, on one connection, ``Connection: close``.

Prints to stderr ``TLS: VERSION, CIPHER, certificate for NAME verified`` and
``GET URL -> STATUS LINE, N bytes``; the body goes to stdout. The exit status
is 0, or 1 when the connection, the handshake (say, a certificate that does
not verify) or the response fails or takes longer than ``--timeout``.
"""

import argparse
import asyncio
import ssl
import sys
from urllib.parse import urlsplit

import ferroloop
from http_get import MAX_LINE, ProtocolError, fetch     # this directory's plain-HTTP client


async def get(url, ctx, servername, timeout):
    parts = urlsplit(url)
    if parts.scheme != 'https' or not parts.hostname:
        raise SystemExit(f'https_get: only https://HOST[:PORT]/PATH URLs are supported, not {url!r}')
    host, port = parts.hostname, parts.port or 443
    target = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        host, port, ssl=ctx, server_hostname=servername or host, limit=MAX_LINE), timeout)
    try:
        tls = writer.get_extra_info('ssl_object')
        subject = dict(rdn[0] for rdn in tls.getpeercert()['subject'])
        print(f'TLS: {tls.version()}, {tls.cipher()[0]}, certificate for '
              f'{subject.get("commonName")} verified', file=sys.stderr, flush=True)
        _, _, status_line, _, body, _ = await asyncio.wait_for(
            fetch(reader, writer, host, port, target, last=True), timeout)
    finally:
        writer.close()      # TLS first says close_notify, then TCP closes
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
    print(f'GET {url} -> {status_line}, {len(body)} bytes', file=sys.stderr, flush=True)
    await asyncio.wait_for(writer.wait_closed(), timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('url')
    parser.add_argument('--cafile', help='PEM file of the CAs to trust (default: the system\'s)')
    parser.add_argument('--servername',
                        help='the name the certificate must carry, sent as SNI (default: the URL\'s host)')
    parser.add_argument('--timeout', type=float, default=30.0, help='seconds, per step')
    args = parser.parse_args(argv)
    # Verification stays on: create_default_context checks the chain and the name.
    ctx = ssl.create_default_context(cafile=args.cafile)
    try:
        ferroloop.run(get(args.url, ctx, args.servername, args.timeout))
    except (ProtocolError, asyncio.IncompleteReadError, OSError) as exc:    # ssl.SSLError is an OSError
        print(f'https_get: {exc!r}', file=sys.stderr)
        return 1
    except asyncio.TimeoutError:
        print(f'https_get: no answer within {args.timeout}s', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
