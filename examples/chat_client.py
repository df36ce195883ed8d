"""The client of ``chat_server.py``: length-prefixed frames over ``asyncio.open_connection``.

Every frame is a 4-byte big-endian length and that many bytes of UTF-8; the
first one sent is the nickname. One task reads frames and prints each on its
own line as it arrives (``bob: hello``, or ``* ...`` for the server's notices);
the main task sends.

    python examples/chat_client.py --port 8888 --name alice          # type lines; Ctrl-D leaves
    python examples/chat_client.py --port 8888 --name bob \\
        --wait-for 3 --say hello --say 'how are you' --expect 4       # scripted: no stdin

Scripted mode (``--say``, repeatable): wait until the server reports at
least ``--wait-for`` clients online, send the messages in order, then stay
until ``--expect`` messages from other clients have arrived (0: leave at
once), and leave: shut down the sending side (``write_eof``) and read until
the server closes the connection. The last line printed is ``NAME: received N messages from
others``. Every wait is bounded by ``--timeout`` (exit status 1 when it runs
out).
"""

import argparse
import asyncio
import re
import struct
import sys

import ferroloop

HEADER = struct.Struct('>I')
ONLINE = re.compile(r'\((\d+) online\)$')


def frame(text):
    data = text.encode()
    return HEADER.pack(len(data)) + data


async def read_frame(reader):
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return (await reader.readexactly(length)).decode('utf-8', errors='replace')


class Inbox:
    """What the reading task has seen, with events the sender can wait on."""

    def __init__(self, wait_for, expect):
        self.wait_for, self.expect = wait_for, expect
        self.online = 0
        self.from_others = 0
        self.enough_online = asyncio.Event()
        self.all_expected = asyncio.Event()
        if expect <= 0:
            self.all_expected.set()

    async def run(self, reader):
        while True:
            try:
                text = await read_frame(reader)
            except asyncio.IncompleteReadError:
                print('-- connection closed', flush=True)
                return
            print(text, flush=True)
            if text.startswith('* '):
                match = ONLINE.search(text)
                if match:
                    self.online = int(match.group(1))
                    if self.online >= self.wait_for:
                        self.enough_online.set()
            else:
                self.from_others += 1
                if self.from_others >= self.expect:
                    self.all_expected.set()


async def wait_or_fail(awaitable, timeout, what):
    try:
        await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise SystemExit(f'chat_client: gave up after {timeout}s waiting for {what}') from None


async def scripted(writer, inbox, messages, timeout):
    await wait_or_fail(inbox.enough_online.wait(), timeout,
                       f'{inbox.wait_for} clients online (saw {inbox.online})')
    for text in messages:
        writer.write(frame(text))
    await writer.drain()
    await wait_or_fail(inbox.all_expected.wait(), timeout,
                       f'{inbox.expect} messages from others (got {inbox.from_others})')


async def interactive(writer):
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        writer.write(frame(line.rstrip('\n')))
        await writer.drain()


async def main_async(args):
    reader, writer = await asyncio.open_connection(args.host, args.port)
    inbox = Inbox(args.wait_for, args.expect)
    reading = asyncio.ensure_future(inbox.run(reader))
    try:
        writer.write(frame(args.name))
        if args.say:
            sending = asyncio.ensure_future(scripted(writer, inbox, args.say, args.timeout))
        else:
            sending = asyncio.ensure_future(interactive(writer))
        # Whichever ends first: we are done sending, or the server hung up.
        await asyncio.wait([sending, reading], return_when=asyncio.FIRST_COMPLETED)
        if not sending.done():
            sending.cancel()
        elif sending.exception() is not None:
            raise sending.exception()
        elif reading.done() and not inbox.all_expected.is_set():
            raise SystemExit(f'chat_client: server closed after {inbox.from_others} of '
                             f'{args.expect} expected messages')
        if not reading.done():
            # Leave gracefully: shut down our side, and read (and print) what
            # is still coming until the server closes too. Closing with unread
            # data in the socket would make the kernel reset the connection.
            writer.write_eof()
            await wait_or_fail(reading, args.timeout, 'the server to close the connection')
    finally:
        reading.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    print(f'{args.name}: received {inbox.from_others} messages from others', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--name', required=True, help='nickname, sent as the first frame')
    parser.add_argument('--say', action='append', metavar='TEXT',
                        help='send this message (repeatable; scripted mode, no stdin)')
    parser.add_argument('--wait-for', type=int, default=1, metavar='N',
                        help='scripted mode: send once N clients are online (default 1)')
    parser.add_argument('--expect', type=int, default=0, metavar='N',
                        help='scripted mode: leave after N messages from others (default 0)')
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='bound on each wait in scripted mode, seconds')
    args = parser.parse_args(argv)
    try:
        ferroloop.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
