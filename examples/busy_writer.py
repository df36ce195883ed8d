"""Writing 8 MiB with ``add_writer`` while a busy callback keeps the loop occupied.

The Tulip demonstration: a large buffer goes out through a non-blocking
socket (or pipe) a piece at a time, each time the loop says the fd is
writable, and a CPU-bound callback reschedules itself with ``call_soon``
forever. Neither starves the other: every loop iteration runs the busy
callback once and the I/O callbacks whose fds are ready, so the transfer
finishes while the busy callback is still being called.

The reading end is watched with ``add_reader`` in the same loop; it hashes
what arrives and stops the loop at end of file. The program prints::

    sent 8388608 bytes sha256 <hex>
    received 8388608 bytes sha256 <hex>
    busy callback ran B times; write callback W times; read callback R times
    busy and I/O callbacks alternated S times
    OK  (or MISMATCH, exit status 1)

    python examples/busy_writer.py
    python examples/busy_writer.py --transport pipe --size 1048576
"""

import argparse
import hashlib
import os
import random
import socket
import sys

import ferroloop

SEED = 3156  # the data is reproducible: random.Random(SEED).randbytes(size)


def make_payload(size):
    return random.Random(SEED).randbytes(size)


class Transfer:
    """Both ends of the byte stream plus the busy callback, all driven by one loop."""

    def __init__(self, loop, transport, payload, spin):
        self.loop = loop
        self.view = memoryview(payload)
        self.sent = 0
        self.received = 0
        self.digest = hashlib.sha256()
        self.spin = spin
        self.finished = False
        self.busy_runs = self.write_calls = self.read_calls = 0
        self.alternations = 0
        self._last_kind = None
        if transport == 'pipe':
            rfd, wfd = os.pipe()
            os.set_blocking(rfd, False)
            os.set_blocking(wfd, False)
            # Plain int fds.
            self.reader, self.writer = rfd, wfd
            self._send = lambda buf: os.write(wfd, buf)
            self._recv = lambda n: os.read(rfd, n)
            self._close_writer = lambda: os.close(wfd)
            self._close_reader = lambda: os.close(rfd)
        else:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            # Socket objects: the loop calls their fileno().
            self.reader, self.writer = rsock, wsock
            self._send = wsock.send
            self._recv = rsock.recv
            self._close_writer = wsock.close
            self._close_reader = rsock.close

    def _note(self, kind):
        if self._last_kind is not None and kind != self._last_kind:
            self.alternations += 1
        self._last_kind = kind

    def start(self):
        self.loop.add_reader(self.reader, self.on_readable)
        self.loop.add_writer(self.writer, self.on_writable)
        self.loop.call_soon(self.busy)

    def on_writable(self):
        self.write_calls += 1
        self._note('io')
        while self.sent < len(self.view):
            try:
                self.sent += self._send(self.view[self.sent:])
            except (BlockingIOError, InterruptedError):
                return  # full: the loop calls us again once there is room
        self.loop.remove_writer(self.writer)
        self._close_writer()  # end of file for the reader

    def on_readable(self):
        self.read_calls += 1
        self._note('io')
        while True:
            try:
                chunk = self._recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                self.loop.remove_reader(self.reader)
                self._close_reader()
                self.finished = True
                self.loop.stop()
                return
            self.received += len(chunk)
            self.digest.update(chunk)

    def busy(self):
        self.busy_runs += 1
        self._note('busy')
        i = 0
        while i < self.spin:  # stands for real CPU-bound work
            i += 1
        if not self.finished:
            self.loop.call_soon(self.busy)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=8 * 1024 * 1024, help='bytes to send')
    parser.add_argument('--transport', choices=('socketpair', 'pipe'), default='socketpair')
    parser.add_argument('--spin', type=int, default=20000,
                        help='iterations of busy work per busy callback')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='give up after this many seconds')
    args = parser.parse_args(argv)

    payload = make_payload(args.size)
    loop = ferroloop.new_event_loop()
    try:
        transfer = Transfer(loop, args.transport, payload, args.spin)
        transfer.start()
        watchdog = loop.call_later(args.timeout, loop.stop)
        loop.run_forever()
        watchdog.cancel()
    finally:
        loop.close()

    sent_digest = hashlib.sha256(payload).hexdigest()
    print(f'sent {len(payload)} bytes sha256 {sent_digest}')
    print(f'received {transfer.received} bytes sha256 {transfer.digest.hexdigest()}')
    print(f'busy callback ran {transfer.busy_runs} times; write callback '
          f'{transfer.write_calls} times; read callback {transfer.read_calls} times')
    print(f'busy and I/O callbacks alternated {transfer.alternations} times')
    ok = (transfer.finished and transfer.received == len(payload)
          and transfer.digest.hexdigest() == sent_digest)
    print('OK' if ok else 'MISMATCH', flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
