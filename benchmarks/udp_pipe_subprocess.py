"""Datagram, pipe and child-process benchmarks, run by micro.py like its own.

    python benchmarks/micro.py --loop ferroloop --bench udp_echo --seconds 0.5

Each function takes (loop, n) and returns the timed seconds for n ops, after
checking its own result with micro.py's ``check`` (which raises its
``WrongResult``); micro.py hands its helpers over through ``benchmarks()``:

- ``udp_echo``: n round trips of a 64-byte datagram between two UDP endpoints
  of the loop under test on 127.0.0.1 -- a ``DatagramProtocol`` echo server
  (``transport.sendto(data, addr)`` in ``datagram_received``) and a connected
  client that sends the next datagram when the echo arrives. One datagram in
  flight, so every round trip costs both sides a loop iteration; every echo
  must equal what was sent.
- ``spawn_true``: n times ``await asyncio.create_subprocess_exec('true')``
  then ``await proc.wait()``: spawning a child and noticing its exit; every
  returncode must be 0.
- ``pipe_cat``: n bytes (a random pattern) written through ``cat`` with
  ``loop.subprocess_exec`` and a ``SubprocessProtocol`` -- written in 256 KiB
  pieces as flow control allows, read back by ``pipe_data_received`` -- until
  cat exits; what comes back must equal what was sent. One op is one byte.
"""

import asyncio
import os
import shutil
import subprocess

import time

perf_counter = time.perf_counter
# micro.py's helpers, set by benchmarks(): importing micro here would import
# it a second time when it runs as the main script.
check = run_with_watchdog = None

UDP_SIZE = 64
PIPE_CHUNK = 256 * 1024


class _EchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class _PingClient(asyncio.DatagramProtocol):
    def __init__(self, loop, n, payloads):
        self.n = n
        self.payloads = payloads
        self.count = 0
        self.bad = 0
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def start(self):
        self.transport.sendto(self.payloads[0])

    def datagram_received(self, data, addr):
        if data != self.payloads[self.count & 255]:
            self.bad += 1
        self.count += 1
        if self.count == self.n:
            self.done.set_result(None)
        else:
            self.transport.sendto(self.payloads[self.count & 255])

    def error_received(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)


_PAYLOADS = [os.urandom(UDP_SIZE) for _ in range(256)]


def udp_echo(loop, n):
    async def main():
        st, _ = await loop.create_datagram_endpoint(_EchoServer, local_addr=('127.0.0.1', 0))
        ct, client = await loop.create_datagram_endpoint(
            lambda: _PingClient(loop, n, _PAYLOADS),
            remote_addr=st.get_extra_info('sockname'))
        try:
            t0 = perf_counter()
            client.start()
            await client.done
            return perf_counter() - t0, client.count, client.bad
        finally:
            ct.close()
            st.close()

    dt, count, bad = run_with_watchdog(loop, main())
    check(count == n, f'udp_echo: {count} echoes, {n} sent')
    check(bad == 0, f'udp_echo: {bad} echoes differ from what was sent')
    return dt


_TRUE = shutil.which('true') or '/bin/true'


def spawn_true(loop, n):
    async def main():
        codes = []
        t0 = perf_counter()
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(_TRUE)
            codes.append(await proc.wait())
        return perf_counter() - t0, codes

    dt, codes = run_with_watchdog(loop, main())
    check(codes == [0] * n, f'spawn_true: returncodes {sorted(set(codes))}, expected all 0')
    return dt


class _CatProtocol(asyncio.SubprocessProtocol):
    def __init__(self, loop, payload):
        self.loop = loop
        self.payload = memoryview(payload)
        self.sent = 0
        self.paused = False
        self.closed = False
        self.received = bytearray()
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.stdin = transport.get_pipe_transport(0)
        self.produce()

    def produce(self):
        total = len(self.payload)
        while not self.paused and self.sent < total:
            end = min(self.sent + PIPE_CHUNK, total)
            self.stdin.write(self.payload[self.sent:end])
            self.sent = end
        if self.sent == total and not self.closed:
            self.closed = True
            # Not from inside resume_writing(): asyncio's write pipe, closed
            # there with data still buffered, drops that data.
            self.loop.call_soon(self.stdin.close)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.produce()

    def pipe_data_received(self, fd, data):
        self.received += data

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


_CAT = shutil.which('cat') or '/bin/cat'
_PATTERN = os.urandom(1 << 20)


def pipe_cat(loop, n):
    payload = (_PATTERN * (n // len(_PATTERN) + 1))[:n]

    async def main():
        t0 = perf_counter()
        transport, proto = await loop.subprocess_exec(
            lambda: _CatProtocol(loop, payload), _CAT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        exc = await proto.done
        dt = perf_counter() - t0
        code = transport.get_returncode()
        transport.close()
        return dt, exc, code, proto.received

    dt, exc, code, received = run_with_watchdog(loop, main())
    check(exc is None and code == 0, f'pipe_cat: cat ended with {exc!r}, returncode {code}')
    check(len(received) == n, f'pipe_cat: {len(received)} bytes came back, {n} sent')
    check(received == payload, 'pipe_cat: the bytes that came back differ from those sent')
    return dt


def benchmarks(check_fn, watchdog_fn):
    """name -> (function, ops per batch), for micro.BENCHMARKS."""
    global check, run_with_watchdog
    check, run_with_watchdog = check_fn, watchdog_fn
    return {
        'udp_echo': (udp_echo, 5_000),
        'spawn_true': (spawn_true, 20),
        'pipe_cat': (pipe_cat, 32 << 20),
    }
