"""Pipes 10 MiB through ``cat`` and checks that every byte came back.

Two ways to drive a child process, both on ferroloop:

- ``--style streams`` (the default): ``asyncio.create_subprocess_exec`` with
  ``stdin=PIPE, stdout=PIPE``; one task writes in 64 KiB pieces with
  ``await proc.stdin.drain()`` (which waits while the pipe is full), another
  reads ``proc.stdout`` until EOF, and ``await proc.wait()`` gives the exit
  status. Writing everything before reading would deadlock once both pipes
  are full: cat blocks writing its output, we block writing its input.
- ``--style protocol``: ``loop.subprocess_exec`` with a
  ``SubprocessProtocol``: the loop calls ``pipe_data_received`` with output as
  it arrives, ``pause_writing`` / ``resume_writing`` pace the writer,
  ``process_exited`` and ``connection_lost`` end it.

    python examples/pipe_through_cat.py                     # 10 MiB, streams
    python examples/pipe_through_cat.py --style protocol --mib 64

The data is pseudo-random from ``--seed`` (default 1), so the printed
checksum is reproducible: the program prints
``sent N bytes sha256=...``, ``received N bytes sha256=...``,
``cat exited with 0`` and ``OK`` -- or exits non-zero on any mismatch.
"""

import argparse
import asyncio
import hashlib
import random
import subprocess
import time

import ferroloop

PIECE = 64 * 1024


def make_data(size, seed):
    return random.Random(seed).randbytes(size)


async def through_streams(data):
    proc = await asyncio.create_subprocess_exec(
        'cat', stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def feed():
        for start in range(0, len(data), PIECE):
            proc.stdin.write(data[start:start + PIECE])
            await proc.stdin.drain()        # waits while cat is behind
        proc.stdin.close()
        await proc.stdin.wait_closed()

    async def collect():
        chunks = []
        while chunk := await proc.stdout.read(1 << 20):
            chunks.append(chunk)
        return b''.join(chunks)

    _, received = await asyncio.gather(feed(), collect())
    return received, await proc.wait()


class CatProtocol(asyncio.SubprocessProtocol):
    def __init__(self, data, done):
        self.data = memoryview(data)
        self.sent = 0
        self.paused = False
        self.chunks = []
        self.done = done
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.stdin = transport.get_pipe_transport(0)
        self.write_more()

    def write_more(self):
        while not self.paused and self.sent < len(self.data):
            self.stdin.write(self.data[self.sent:self.sent + PIECE])
            self.sent = min(self.sent + PIECE, len(self.data))
        if self.sent == len(self.data) and not self.stdin.is_closing():
            # Closed once what is buffered has been written.
            self.stdin.close()

    def pause_writing(self):        # the stdin pipe's buffer is full
        self.paused = True

    def resume_writing(self):       # ... and has drained again
        self.paused = False
        asyncio.get_running_loop().call_soon(self.write_more)

    def pipe_data_received(self, fd, data):
        self.chunks.append(data)

    def process_exited(self):
        pass                        # the pipes may still hold output

    def connection_lost(self, exc):
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(b''.join(self.chunks))


async def through_protocol(data):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.subprocess_exec(lambda: CatProtocol(data, done), 'cat',
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=None)
    try:
        received = await done
        return received, transport.get_returncode()
    finally:
        transport.close()


async def main_async(size, seed, style):
    data = make_data(size, seed)
    print(f'sent {len(data)} bytes sha256={hashlib.sha256(data).hexdigest()}', flush=True)
    t0 = time.perf_counter()
    received, code = await (through_streams(data) if style == 'streams' else through_protocol(data))
    elapsed = time.perf_counter() - t0
    print(f'received {len(received)} bytes sha256={hashlib.sha256(received).hexdigest()}',
          flush=True)
    print(f'cat exited with {code}', flush=True)
    print(f'{len(received) / elapsed / 1e6:.0f} MB/s', flush=True)
    if code != 0:
        raise SystemExit(f'cat failed with exit status {code}')
    if received != data:
        raise SystemExit('MISMATCH: what came back differs from what was sent')
    print('OK', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mib', type=float, default=10, help='MiB to send (default 10)')
    parser.add_argument('--seed', type=int, default=1, help='seed of the pseudo-random data')
    parser.add_argument('--style', choices=('streams', 'protocol'), default='streams')
    args = parser.parse_args(argv)
    ferroloop.run(main_async(int(args.mib * 1024 * 1024), args.seed, args.style))


if __name__ == '__main__':
    main()
