"""Pipe transports: ``connect_read_pipe`` / ``connect_write_pipe``.

``ReadPipeTransport`` and ``WritePipeTransport`` are real
``asyncio.ReadTransport`` / ``asyncio.WriteTransport`` subclasses with
asyncio's Unix pipe contract (``unix_events._UnixReadPipeTransport`` /
``_UnixWritePipeTransport``): pipes, FIFOs, character devices (ptys) and
sockets are accepted, anything else is refused. Reads, writes, the write
buffer, flow control and closing are the native ``ReadPipeCore`` /
``WritePipeCore`` (src/pipe_transport.rs), whose hot methods are bound on
each instance; checking the file and reporting errors stay here.

A write pipe on a FIFO or socket also watches its fd for readability: the
kernel reports it when the reading end is closed, and the transport closes
(with ``BrokenPipeError`` if data was still buffered), as asyncio's does.
"""

import errno
import os
import stat
import warnings

from asyncio import futures, transports
# asyncio's own module logger, looked up per call (tests replace it).
from asyncio import unix_events as _logging_module

from ._ferroloop import read_pipe_core, write_pipe_core
from ._core_transport import CoreTransport, CoreWriteFlow, core_methods



class _PipeTransportBase(CoreTransport):
    """What both pipe transports share: the pipe and its lifecycle."""

    _logging_module = _logging_module
    _FATAL_MESSAGE = 'Fatal error on pipe transport'

    _core = None
    # asyncio's attribute: None once the pipe is closed (tests set it, too).
    _pipe = None

    def _init_pipe(self, loop, pipe):
        self._extra['pipe'] = pipe
        self._loop = loop
        self._pipe = pipe
        self._fileno = pipe.fileno()

    def _refuse(self, message):
        self._pipe = None
        self._fileno = None
        raise ValueError(message)

    def __repr__(self):
        info = [self.__class__.__name__]
        core = self._core
        if self._pipe is None:
            info.append('closed')
        elif core is not None and core._closing:
            info.append('closing')
        info.append(f'fd={self._fileno}')
        loop = self._loop
        if self._pipe is not None and loop is not None and not loop.is_closed():
            info.append('polling' if core is not None and core._polling else 'idle')
            self._repr_extra(info)
        elif self._pipe is not None:
            info.append('open')
        else:
            info.append('closed')
        return '<{}>'.format(' '.join(info))

    def _repr_extra(self, info):
        pass

    def __del__(self, _warn=warnings.warn):
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _close(self, exc=None):
        self._core._close(exc)

    def _close_after_error(self, exc):
        self._core._close(exc)

    def _call_connection_lost(self, exc):
        pipe, protocol = self._core._detach()
        try:
            if protocol is not None:
                protocol.connection_lost(exc)
        finally:
            if pipe is not None:
                pipe.close()
            self._pipe = None
            self._loop = None

@core_methods('pause_reading', 'resume_reading', 'is_reading', 'is_closing', 'close')
class ReadPipeTransport(_PipeTransportBase, transports.ReadTransport):
    """The read end of a pipe, FIFO, character device or socket."""

    max_size = 256 * 1024  # asked of each read, as asyncio's

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        self._init_pipe(loop, pipe)
        mode = os.fstat(self._fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._refuse("Pipe transport is for pipes/sockets only.")
        os.set_blocking(self._fileno, False)
        core = read_pipe_core(loop, pipe, self._fileno, self, protocol, self.max_size)
        self._core = core
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only once connection_made() has run.
        loop.call_soon(core._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    @property
    def _paused(self):
        return self._core._paused

    @staticmethod
    def _quiet_error(exc):
        # A pty whose other side closed reads EIO: the end, not a failure.
        return isinstance(exc, OSError) and exc.errno == errno.EIO


@core_methods('write', 'write_eof', 'can_write_eof', 'is_closing', 'close', 'abort',
              'get_write_buffer_size')
class WritePipeTransport(_PipeTransportBase, CoreWriteFlow, transports.Transport):
    """The write end of a pipe, FIFO, character device or socket.

    A ``Transport``, as asyncio's is: the reading methods are the base
    class's, which raise NotImplementedError.
    """

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        self._init_pipe(loop, pipe)
        mode = os.fstat(self._fileno).st_mode
        is_fifo = stat.S_ISFIFO(mode)
        is_socket = stat.S_ISSOCK(mode)
        if not (stat.S_ISCHR(mode) or is_fifo or is_socket):
            self._refuse("Pipe transport is only for "
                         "pipes, sockets and character devices")
        os.set_blocking(self._fileno, False)
        core = write_pipe_core(loop, pipe, self._fileno, self, protocol)
        self._core = core
        loop.call_soon(protocol.connection_made, self)
        if is_socket or is_fifo:
            # Readable means the reader went away; watched once
            # connection_made() has run.
            loop.call_soon(core._start_peer_watch)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def _repr_extra(self, info):
        info.append(f'bufsize={self._core.get_write_buffer_size()}')

    def writelines(self, list_of_data):
        self.write(b''.join(list_of_data))

    @staticmethod
    def _quiet_error(exc):
        return isinstance(exc, OSError)


class PipeMixin:

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Reads ``pipe`` (a file-like object with ``fileno()``) into a protocol."""
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_read_pipe_transport(pipe, protocol, waiter)
        try:
            await waiter
        except:  # noqa: E722 - cancellation too
            transport.close()
            raise
        if self.get_debug():
            _logging_module.logger.debug('Read pipe %r connected: (%r, %r)',
                                         pipe.fileno(), transport, protocol)
        return transport, protocol

    async def connect_write_pipe(self, protocol_factory, pipe):
        """A transport writing to ``pipe`` (a file-like object with ``fileno()``)."""
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_write_pipe_transport(pipe, protocol, waiter)
        try:
            await waiter
        except:  # noqa: E722 - cancellation too
            transport.close()
            raise
        if self.get_debug():
            _logging_module.logger.debug('Write pipe %r connected: (%r, %r)',
                                         pipe.fileno(), transport, protocol)
        return transport, protocol
