"""Pipe transports: ``connect_read_pipe`` / ``connect_write_pipe``.

Every test takes the ``loop`` fixture and runs once on ferroloop and once on
asyncio's own ``SelectorEventLoop``, so a pass proves both behave the same.
Pipes, FIFOs in temporary directories, socket pairs and ptys; every wait is
bounded.
"""

import asyncio
import errno
import gc
import logging
import os
import socket

import pytest
from support import run


def open_fds():
    return set(os.listdir('/proc/self/fd'))


class Reader(asyncio.Protocol):
    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.lost = loop.create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')

    def data_received(self, data):
        if self.events[-1] != 'data':
            self.events.append('data')
        self.data += data
        self.arrived.set()

    def eof_received(self):
        self.events.append('eof')

    def connection_lost(self, exc):
        self.events.append('lost')
        self.lost.set_result(exc)

    async def until(self, size):
        while len(self.data) < size:
            self.arrived.clear()
            await self.arrived.wait()


class Writer(asyncio.BaseProtocol):
    def __init__(self, loop):
        self.events = []
        self.transport = None
        self.lost = loop.create_future()
        self.resumed = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')

    def pause_writing(self):
        self.events.append('pause')

    def resume_writing(self):
        self.events.append('resume')
        self.resumed.set()

    def connection_lost(self, exc):
        self.events.append('lost')
        self.lost.set_result(exc)


def pipe_files():
    r, w = os.pipe()
    return open(r, 'rb', buffering=0), open(w, 'wb', buffering=0)


async def read_all(fd, size):
    """Reads ``size`` bytes from a blocking-free fd without the loop's help."""
    got = bytearray()
    while len(got) < size:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            await asyncio.sleep(0.001)
            continue
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_read_pipe_data_eof_and_callback_order(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_read_pipe(lambda: Reader(loop), rf)
        assert p.events == ['made'] and p.transport is t
        assert t.get_extra_info('pipe') is rf
        assert isinstance(t, asyncio.ReadTransport) and t.is_reading()
        os.write(wf.fileno(), b'1')
        await p.until(1)
        os.write(wf.fileno(), b'2345')
        await p.until(5)
        wf.close()
        assert await p.lost is None
        assert p.events == ['made', 'data', 'eof', 'lost']
        assert bytes(p.data) == b'12345'
        assert rf.closed and t.is_closing()
    run(loop, main())


def test_data_received_rebound_on_the_instance_runs_from_the_next_read(loop):
    # asyncio looks the callback up on every read.
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_read_pipe(lambda: Reader(loop), rf)
        seen = []

        def first(data):
            seen.append(('first', data))
            p.data_received = lambda data: (seen.append(('second', data)), p.arrived.set())
            p.arrived.set()
        p.data_received = first
        os.write(wf.fileno(), b'1')
        while not seen:
            p.arrived.clear()
            await p.arrived.wait()
        os.write(wf.fileno(), b'2')
        while len(seen) < 2:
            p.arrived.clear()
            await p.arrived.wait()
        assert seen == [('first', b'1'), ('second', b'2')]
        wf.close()
        await p.lost
    run(loop, main())


def test_write_pipe_write_eof_and_close(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        assert isinstance(t, asyncio.WriteTransport) and t.can_write_eof()
        assert t.get_extra_info('pipe') is wf
        t.write(b'abc')
        t.write(bytearray(b'def'))
        t.writelines([b'g', memoryview(b'hi')])
        t.write(b'')
        assert t.get_write_buffer_size() == 0
        t.write_eof()
        assert t.is_closing()
        assert await p.lost is None
        assert wf.closed
        os.set_blocking(rf.fileno(), False)
        assert await read_all(rf.fileno(), 100) == b'abcdefghi'
        assert p.events == ['made', 'lost']
        t.close()            # nothing more happens
        await asyncio.sleep(0)
        assert p.events == ['made', 'lost']
    with rf:
        run(loop, main())


def test_ten_mebibytes_from_a_write_pipe_to_a_read_pipe(loop):
    rf, wf = pipe_files()
    blob = os.urandom(10 * 1024 * 1024)

    async def main():
        rt, rp = await loop.connect_read_pipe(lambda: Reader(loop), rf)
        wt, wp = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        wt.write(blob)
        assert wt.get_write_buffer_size() > 0
        assert wp.events == ['made', 'pause']
        wt.close()
        assert await wp.lost is None
        assert await rp.lost is None
        assert wp.events == ['made', 'pause', 'resume', 'lost']
        assert rp.data == blob
    run(loop, main())


def test_write_flow_control_and_buffer_limits(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        t.set_write_buffer_limits(high=1000, low=100)
        assert t.get_write_buffer_limits() == (100, 1000)
        with pytest.raises(ValueError, match=r'high \(1\) must be >= low \(2\) must be >= 0'):
            t.set_write_buffer_limits(high=1, low=2)
        t.write(b'x' * (1 << 16))        # fills the pipe
        t.write(b'y' * 2000)
        assert t.get_write_buffer_size() > 1000
        assert p.events == ['made', 'pause']
        os.set_blocking(rf.fileno(), False)
        got = await read_all(rf.fileno(), (1 << 16) + 2000)
        await asyncio.wait_for(p.resumed.wait(), 5)
        assert got == b'x' * (1 << 16) + b'y' * 2000
        assert t.get_write_buffer_size() == 0
        t.abort()
        assert await p.lost is None
    with rf:
        run(loop, main())


def test_pause_and_resume_reading(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_read_pipe(lambda: Reader(loop), rf)
        t.pause_reading()
        t.pause_reading()
        assert not t.is_reading()
        os.write(wf.fileno(), b'held')
        await asyncio.sleep(0.05)
        assert p.data == b''
        t.resume_reading()
        t.resume_reading()
        await p.until(4)
        assert p.data == b'held'
        t.close()
        assert not t.is_reading()
        assert await p.lost is None
        assert p.events == ['made', 'data', 'lost']
    with wf:
        run(loop, main())


def test_write_pipe_notices_the_reader_going_away(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        t.write(b'read by nobody')
        rf.close()
        assert await p.lost is None      # nothing was buffered
        assert wf.closed
    run(loop, main())


def test_reader_gone_with_data_buffered_is_a_broken_pipe(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        t.write(b'z' * (1 << 17))
        assert t.get_write_buffer_size() > 0
        rf.close()
        assert isinstance(await p.lost, BrokenPipeError)
        assert t.get_write_buffer_size() == 0
    run(loop, main())


def test_writes_after_close_are_dropped_and_logged(loop, caplog):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        t.close()
        await p.lost
        with caplog.at_level(logging.WARNING, logger='asyncio'):
            for _ in range(7):
                t.write(b'late')
        warned = [r for r in caplog.records
                  if r.getMessage() == 'pipe closed by peer or os.write(pipe, data) raised exception.']
        assert len(warned) == 2
    with rf:
        run(loop, main())


def test_write_rejects_non_bytes(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        with pytest.raises(AssertionError):
            t.write('text')
        t.close()
        await p.lost
    with rf:
        run(loop, main())


def test_regular_files_are_refused(loop, tmp_path):
    path = tmp_path / 'file'
    path.write_bytes(b'data')

    async def main():
        with open(path, 'rb') as f:
            with pytest.raises(ValueError, match='Pipe transport is for pipes/sockets only.'):
                await loop.connect_read_pipe(lambda: Reader(loop), f)
        with open(path, 'wb') as f:
            with pytest.raises(ValueError, match='Pipe transport is only for pipes, sockets '
                                                 'and character devices'):
                await loop.connect_write_pipe(lambda: Writer(loop), f)
    run(loop, main())


def test_fifo_both_ways(loop, tmp_path):
    path = str(tmp_path / 'fifo')
    os.mkfifo(path)

    async def main():
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        rt, rp = await loop.connect_read_pipe(lambda: Reader(loop), open(rfd, 'rb', 0))
        wt, wp = await loop.connect_write_pipe(lambda: Writer(loop), open(wfd, 'wb', 0))
        wt.write(b'through a fifo')
        await rp.until(14)
        wt.close()
        await wp.lost
        assert await rp.lost is None
        assert rp.data == b'through a fifo'
        assert rp.events == ['made', 'data', 'eof', 'lost']
    run(loop, main())


def test_sockets_as_pipes(loop):
    a, b = socket.socketpair()

    async def main():
        rt, rp = await loop.connect_read_pipe(lambda: Reader(loop), a)
        wt, wp = await loop.connect_write_pipe(lambda: Writer(loop), b)
        wt.write(b'socket pipe')
        await rp.until(11)
        wt.close()
        await wp.lost
        assert await rp.lost is None
        assert rp.data == b'socket pipe'
        assert a.fileno() == -1 and b.fileno() == -1
    run(loop, main())


def test_write_socket_pipe_notices_peer_close(loop):
    a, b = socket.socketpair()

    async def main():
        wt, wp = await loop.connect_write_pipe(lambda: Writer(loop), b)
        wt.write(b'1')
        assert a.recv(10) == b'1'
        a.close()
        assert await wp.lost is None
    run(loop, main())


def test_pty_output_ends_quietly_with_eio(loop, errors):
    master, slave = os.openpty()

    async def main():
        t, p = await loop.connect_read_pipe(lambda: Reader(loop), open(master, 'rb', 0))
        os.write(slave, b'from the tty\n')
        await p.until(13)
        os.close(slave)
        exc = await p.lost
        # A pty's master reads EIO once the slave is closed: reported to the
        # protocol, not to the exception handler.
        assert isinstance(exc, OSError) and exc.errno == errno.EIO
        assert errors == []
        assert p.data.replace(b'\r\n', b'\n') == b'from the tty\n'
    run(loop, main())


def test_write_to_a_pty(loop):
    master, slave = os.openpty()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), open(slave, 'wb', 0))
        t.write(b'to the tty\n')
        os.set_blocking(master, False)
        got = b''
        while not got.endswith(b'\n'):
            got += await read_all(master, 1)
        assert got.replace(b'\r\n', b'\n') == b'to the tty\n'
        t.close()
        assert await p.lost is None
    try:
        run(loop, main())
    finally:
        os.close(master)


def test_data_received_raising_goes_to_the_handler_and_reading_goes_on(loop, errors):
    rf, wf = pipe_files()

    class Raising(Reader):
        def data_received(self, data):
            super().data_received(data)
            if data == b'boom':
                raise ZeroDivisionError

    async def main():
        t, p = await loop.connect_read_pipe(lambda: Raising(loop), rf)
        os.write(wf.fileno(), b'boom')
        await p.until(4)
        await asyncio.sleep(0.01)
        os.write(wf.fileno(), b'more')
        await p.until(8)
        assert len(errors) == 1 and isinstance(errors[0]['exception'], ZeroDivisionError)
        assert not t.is_closing()
        t.close()
        await p.lost
    with wf:
        run(loop, main())


def test_abort_drops_the_buffer(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        t.write(b'q' * (1 << 17))
        assert t.get_write_buffer_size() > 0
        t.abort()
        assert t.get_write_buffer_size() == 0
        assert await p.lost is None
    with rf:
        run(loop, main())


def test_no_fd_leaks(loop):
    async def main():
        gc.collect()
        before = open_fds()
        for _ in range(20):
            rf, wf = pipe_files()
            rt, rp = await loop.connect_read_pipe(lambda: Reader(loop), rf)
            wt, wp = await loop.connect_write_pipe(lambda: Writer(loop), wf)
            wt.write(b'x')
            await rp.until(1)
            wt.close()
            await wp.lost
            await rp.lost
        assert open_fds() - before == set()
    run(loop, main())


def test_unclosed_transports_warn_and_close_their_pipe(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_read_pipe(lambda: Reader(loop), rf)
        return t

    t = run(loop, main())
    fd = rf.fileno()
    loop.close()
    assert 'open' in repr(t)
    with pytest.warns(ResourceWarning, match='unclosed transport'):
        del t
        gc.collect()
    assert rf.closed
    wf.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_ferroloop_repr():
    import ferroloop
    loop = ferroloop.new_event_loop()
    rf, wf = pipe_files()
    try:
        async def main():
            t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
            assert repr(t) == f'<WritePipeTransport fd={wf.fileno()} idle bufsize=0>'
            t.write(b'w' * (1 << 17))
            assert 'polling bufsize=' in repr(t)
            t.abort()
            await p.lost
            assert repr(t) == '<WritePipeTransport closed fd=%d closed>' % t._fileno
        run(loop, main())
    finally:
        rf.close()
        loop.close()


def test_queued_data_is_what_was_written_even_if_the_caller_changes_it(loop):
    rf, wf = pipe_files()

    async def main():
        t, p = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        t.set_write_buffer_limits(high=1 << 30)
        t.write(b'f' * (1 << 16))                   # the pipe is full now
        ba = bytearray(b'A' * 20000)
        t.write(ba)
        ba[:] = b'X' * 20000                        # a copy was queued
        backing = bytearray(b'B' * 20000)
        t.write(memoryview(backing))
        backing[:] = b'Y' * 20000
        immutable = b'C' * 20000
        view = memoryview(immutable)
        t.write(view[1000:])
        view.release()                              # the caller may release its view
        t.write(b'D' * 5)
        t.writelines([b'E' * 30000, b'F'])
        assert t.get_write_buffer_size() > 0
        os.set_blocking(rf.fileno(), False)
        expected = (b'f' * (1 << 16) + b'A' * 20000 + b'B' * 20000 + b'C' * 19000 + b'D' * 5
                    + b'E' * 30000 + b'F')
        got = await read_all(rf.fileno(), len(expected))
        assert got == expected
        t.close()
        assert await p.lost is None
    with rf:
        run(loop, main())
