"""A chat server on asyncio streams: length-prefixed messages, relayed to every other client.

TCP is a byte stream, not a message stream: one ``read()`` may return half a
message or three of them. So every message travels as a frame: a 4-byte
big-endian length, then that many bytes of UTF-8. ``readexactly(4)`` and
``readexactly(length)`` get whole frames however the bytes were split on
the way, and raise ``IncompleteReadError`` when the client goes away.

Protocol (``chat_client.py`` speaks it):

- the client's first frame is its nickname;
- the server answers ``* welcome NAME (N online)`` and tells the others
  ``* NAME joined (N online)``;
- every later frame from a client goes to all *other* clients as
  ``NAME: TEXT`` (the sender never gets its own message back);
- when a client leaves the others get ``* NAME left (N online)``.

A client whose unsent backlog passes 1 MiB (it stopped reading) is
disconnected rather than letting the server buffer for it without bound.

    python examples/chat_server.py                  # any free port, until Ctrl-C
    python examples/chat_server.py --port 8888
    python examples/chat_server.py --clients 3      # exit after three clients have left

Prints ``listening on 127.0.0.1:PORT`` first, then one line per join, message
and leave, and ``served K clients, M messages relayed`` before exiting.
"""

import argparse
import asyncio
import struct

import ferroloop

HEADER = struct.Struct('>I')
MAX_MESSAGE = 64 * 1024
MAX_BACKLOG = 1024 * 1024


def frame(text):
    data = text.encode()
    return HEADER.pack(len(data)) + data


async def read_frame(reader):
    """The next message as text; IncompleteReadError at EOF, ValueError if too long."""
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > MAX_MESSAGE:
        raise ValueError(f'message of {length} bytes (limit {MAX_MESSAGE})')
    return (await reader.readexactly(length)).decode('utf-8', errors='replace')


class ChatRoom:
    def __init__(self):
        self.members = {}       # writer -> nickname, in joining order
        self.relayed = 0

    def send(self, writer, text):
        if writer.is_closing():
            return
        writer.write(frame(text))
        if writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            print(f'{self.members.get(writer)} does not read: disconnecting', flush=True)
            writer.transport.abort()

    def broadcast(self, text, sender):
        for writer in list(self.members):
            if writer is not sender:
                self.send(writer, text)

    async def serve(self, reader, writer):
        try:
            name = (await read_frame(reader)).strip() or 'anonymous'
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()
            return None
        self.members[writer] = name
        online = len(self.members)
        print(f'{name} joined ({online} online)', flush=True)
        self.send(writer, f'* welcome {name} ({online} online)')
        self.broadcast(f'* {name} joined ({online} online)', sender=writer)
        try:
            while True:
                text = await read_frame(reader)
                print(f'{name}: {text}', flush=True)
                self.broadcast(f'{name}: {text}', sender=writer)
                self.relayed += 1
        except asyncio.IncompleteReadError:
            pass                                # the client closed the connection
        except (ConnectionError, ValueError) as exc:
            print(f'{name}: {exc!r}', flush=True)
        finally:
            del self.members[writer]
            online = len(self.members)
            print(f'{name} left ({online} online)', flush=True)
            self.broadcast(f'* {name} left ({online} online)', sender=writer)
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
        return name


async def main_async(port, max_clients):
    loop = asyncio.get_running_loop()
    room = ChatRoom()
    left = []
    all_done = loop.create_future()

    async def handle_client(reader, writer):
        left.append(await room.serve(reader, writer))
        if max_clients and len(left) >= max_clients and not all_done.done():
            all_done.set_result(None)

    server = await asyncio.start_server(handle_client, '127.0.0.1', port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f'listening on {host}:{port}', flush=True)
    async with server:
        if max_clients:
            await all_done
        else:
            await server.serve_forever()
    print(f'served {len(left)} clients, {room.relayed} messages relayed', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (0: any free one)')
    parser.add_argument('--clients', type=int, default=0,
                        help='exit after this many clients have left (0: serve forever)')
    args = parser.parse_args(argv)
    try:
        ferroloop.run(main_async(args.port, args.clients))
    except KeyboardInterrupt:
        print('interrupted', flush=True)


if __name__ == '__main__':
    main()
