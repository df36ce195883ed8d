"""A line echo server on asyncio's streams: ``asyncio.start_server`` and ``reader.readline()``.

The same echo as ``protocol_echo_server.py``, written as a coroutine per
client instead of callbacks: ``await reader.readline()`` suspends the client's
task until a whole line has arrived, ``writer.write`` + ``await
writer.drain()`` sends it back (and waits if the client reads slower than it
sends). A last line without a newline is echoed as it is when the client
shuts down its side; then the server closes the connection.

    python examples/streams_echo_server.py                  # any free port, until Ctrl-C
    python examples/streams_echo_server.py --port 8888      # then: nc 127.0.0.1 8888
    python examples/streams_echo_server.py --clients 2      # exit after two clients have left
    python examples/streams_echo_server.py --demo 3         # also run three clients in this loop

It prints ``listening on 127.0.0.1:PORT``, then per client ``client
connected: ADDR`` and ``client disconnected: ADDR (N lines echoed)``, and
``served K clients, N lines echoed`` before exiting. Each ``--demo`` client
(``asyncio.open_connection``) sends its lines one at a time, reads each echo
with ``readline()`` before sending the next, and prints ``demo client K: N
lines echoed in order OK``.
"""

import argparse
import asyncio

import ferroloop


async def echo_lines(reader, writer):
    """One client: echo line by line until it closes its side; returns the line count."""
    peer = writer.get_extra_info('peername')
    print(f'client connected: {peer}', flush=True)
    lines = 0
    try:
        while True:
            line = await reader.readline()
            if not line:            # EOF: the client shut down its side
                break
            writer.write(line)
            await writer.drain()
            lines += 1
    except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
        # ValueError: a line longer than the reader's limit (64 KiB).
        print(f'client {peer}: {exc!r}', flush=True)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    print(f'client disconnected: {peer} ({lines} lines echoed)', flush=True)
    return lines


async def demo_client(number, host, port, count=50):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in range(1, count + 1):
            line = f'demo client {number} line {i} ' + 'x' * (i * 37 % 500) + '\n'
            writer.write(line.encode())
            await writer.drain()
            echoed = await reader.readline()
            if echoed != line.encode():
                raise SystemExit(f'demo client {number}: line {i} came back as {echoed[:60]!r}')
        writer.write_eof()
        rest = await reader.read()
        if rest:
            raise SystemExit(f'demo client {number}: unexpected bytes after the last line: {rest!r}')
    finally:
        writer.close()
        await writer.wait_closed()
    print(f'demo client {number}: {count} lines echoed in order OK', flush=True)


async def main_async(port, max_clients, demo):
    loop = asyncio.get_running_loop()
    counts = []
    all_done = loop.create_future()

    async def handle_client(reader, writer):
        counts.append(await echo_lines(reader, writer))
        if max_clients and len(counts) >= max_clients and not all_done.done():
            all_done.set_result(None)

    server = await asyncio.start_server(handle_client, '127.0.0.1', port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f'listening on {host}:{port}', flush=True)
    async with server:
        if demo:
            await asyncio.gather(*(demo_client(k, host, port) for k in range(1, demo + 1)))
        if max_clients:
            await all_done
        else:
            await server.serve_forever()
    print(f'served {len(counts)} clients, {sum(counts)} lines echoed', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (0: any free one)')
    parser.add_argument('--clients', type=int, default=0,
                        help='exit after this many clients have disconnected (0: serve forever)')
    parser.add_argument('--demo', type=int, default=0, metavar='N',
                        help='run N line clients in the same loop, then exit')
    args = parser.parse_args(argv)
    if args.clients and args.demo:
        parser.error('--demo N serves exactly its N clients; leave out --clients')
    try:
        ferroloop.run(main_async(args.port, args.clients or args.demo, args.demo))
    except KeyboardInterrupt:
        print('interrupted', flush=True)


if __name__ == '__main__':
    main()
