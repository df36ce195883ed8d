"""STARTTLS: a plain-text connection upgraded to TLS in place, on asyncio streams.

    python examples/starttls_upgrade.py demo --cert cert.pem --key key.pem --say hello
    python examples/starttls_upgrade.py server --cert cert.pem --key key.pem --port 8025
    python examples/starttls_upgrade.py client --port 8025 --cafile cert.pem --say hi --say there

A certificate for localhost / 127.0.0.1 to try it with:

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \\
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \\
        -keyout key.pem -out cert.pem

The conversation, in lines, as SMTP, IMAP and XMPP have it:

    server: 220 ready, say STARTTLS          (plain text)
    client: STARTTLS
    server: 220 go ahead
            -- both sides: await writer.start_tls(...), the TLS handshake --
    client: a line                           (TLS from here on)
    server: echo: a line
    client: QUIT
    server: bye                              and closes

``StreamWriter.start_tls`` (Python 3.11+) hands the live socket to a TLS
layer and keeps the same reader and writer, which from then on carry the
decrypted bytes; the server side is known from ``start_server``. A command
other than STARTTLS gets ``530 STARTTLS first`` and the connection is closed:
nothing travels in plain text past the greeting.

The server prints ``listening on 127.0.0.1:PORT``, per client ``server: PEER
upgraded to VERSION CIPHER`` and ``server: PEER left, N lines echoed over
TLS``, and ``served K clients`` before it exits (after ``--clients``, 0:
never). The client prints ``client: upgraded to VERSION CIPHER``, each reply
as ``client: REPLY``, and exits 1 if the server does not play along.
"""

import argparse
import asyncio
import ssl
import sys

import ferroloop

TIMEOUT = 10.0      # seconds for any one reply


class Refused(Exception):
    pass


async def reply(reader, expected_prefix):
    line = (await asyncio.wait_for(reader.readline(), TIMEOUT)).decode(errors='replace')
    if not line.startswith(expected_prefix):
        raise Refused(f'expected {expected_prefix!r}, the server said {line.rstrip()!r}')
    return line.rstrip('\n')


async def serve_client(reader, writer, ctx):
    peer = '%s:%d' % writer.get_extra_info('peername')
    lines = 0
    try:
        writer.write(b'220 ready, say STARTTLS\n')
        if await reader.readline() != b'STARTTLS\n':
            writer.write(b'530 STARTTLS first\n')
            print(f'server: {peer} did not ask for STARTTLS', flush=True)
            return
        writer.write(b'220 go ahead\n')
        # Drains the reply above in plain text, then the handshake: the client
        # sends its hello only once it has read "220 go ahead".
        await writer.start_tls(ctx)
        tls = writer.get_extra_info('ssl_object')
        print(f'server: {peer} upgraded to {tls.version()} {tls.cipher()[0]}', flush=True)
        while (line := await reader.readline()) not in (b'QUIT\n', b''):
            writer.write(b'echo: ' + line)
            await writer.drain()
            lines += 1
        writer.write(b'bye\n')
        await writer.drain()
        print(f'server: {peer} left, {lines} lines echoed over TLS', flush=True)
    finally:
        writer.close()


async def serve(port, ctx, clients, ready=None):
    """Serves until `clients` connections have ended (0: forever)."""
    loop = asyncio.get_running_loop()
    ended = 0
    all_done = loop.create_future()

    async def handle(reader, writer):
        nonlocal ended
        try:
            await serve_client(reader, writer, ctx)
        except (OSError, ValueError) as exc:
            # One client's failure, not the server's (ValueError: a line over
            # the reader's 64 KiB limit).
            print(f'server: client failed: {exc!r}', flush=True)
        finally:
            ended += 1
            if ended == clients:
                all_done.set_result(None)

    server = await asyncio.start_server(handle, '127.0.0.1', port)
    host, port = server.sockets[0].getsockname()
    print(f'listening on {host}:{port}', flush=True)
    if ready is not None:
        ready.set_result(port)
    async with server:
        await all_done
    print(f'served {ended} clients', flush=True)


async def run_client(port, ctx, says):
    reader, writer = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', port), TIMEOUT)
    try:
        await reply(reader, '220 ')
        writer.write(b'STARTTLS\n')
        await reply(reader, '220 ')
        # The same reader and writer, now over TLS; the certificate must be
        # valid for "localhost" and signed by a CA in ctx.
        await asyncio.wait_for(writer.start_tls(ctx, server_hostname='localhost'), TIMEOUT)
        tls = writer.get_extra_info('ssl_object')
        print(f'client: upgraded to {tls.version()} {tls.cipher()[0]}', flush=True)
        for text in says:
            writer.write(text.encode() + b'\n')
            print(f'client: {await reply(reader, "echo: ")}', flush=True)
        writer.write(b'QUIT\n')
        print(f'client: {await reply(reader, "bye")}', flush=True)
    finally:
        writer.close()
    await writer.wait_closed()


async def demo(ctx_server, ctx_client, says):
    ready = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(0, ctx_server, 1, ready))
    await run_client(await ready, ctx_client, says)
    await server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('mode', choices=('server', 'client', 'demo'))
    parser.add_argument('--port', type=int, default=0, help='on 127.0.0.1 (server: 0 picks one)')
    parser.add_argument('--cert', help='server, demo: the certificate (PEM)')
    parser.add_argument('--key', help='server, demo: its private key (PEM)')
    parser.add_argument('--cafile', help='client: CAs to trust (demo: the --cert itself)')
    parser.add_argument('--clients', type=int, default=0, help='server: exit after this many (0: never)')
    parser.add_argument('--say', action='append', default=[], help='client, demo: a line to send')
    args = parser.parse_args(argv)

    if args.mode != 'client':
        if not (args.cert and args.key):
            parser.error(f'{args.mode} needs --cert and --key')
        ctx_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx_server.load_cert_chain(args.cert, args.key)
    if args.mode != 'server':
        if args.mode == 'client' and not args.port:
            parser.error('client needs --port')
        ctx_client = ssl.create_default_context(cafile=args.cafile or args.cert)
    try:
        if args.mode == 'server':
            ferroloop.run(serve(args.port, ctx_server, args.clients))
        elif args.mode == 'client':
            ferroloop.run(run_client(args.port, ctx_client, args.say))
        else:
            ferroloop.run(demo(ctx_server, ctx_client, args.say))
    except (Refused, OSError, ValueError, asyncio.TimeoutError) as exc:
        print(f'starttls_upgrade: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
