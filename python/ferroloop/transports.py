"""The stream transport for TCP and Unix sockets: ``SocketTransport``.

A real ``asyncio.Transport`` subclass, so libraries that check types accept
it. Its read and write paths, buffer and close state machine are the native
``StreamTransportCore``; the hot methods (``write``, ``is_closing``, ...) are
the core's own bound methods, set on the instance at first use, so calling
them runs no Python frame. What runs once per connection or on errors stays
here.
"""

import _socket
import socket
import sys
import warnings

from asyncio import constants, futures, transports

from ._ferroloop import stream_transport_core
from .core_transport import CoreTransport, CoreWriteFlow, add_socket_extra, core_methods

_WRITELINES_CHECKS = sys.version_info >= (3, 12)



# socket.socket's family and type properties build an enum on every read;
# the C socket's own attributes give the plain ints, once per connection.
_raw_family = _socket.socket.family.__get__
_raw_type = _socket.socket.type.__get__


def _set_nodelay(sock):
    # As asyncio: small writes go out without waiting for the peer's ACK.
    if (_raw_family(sock) in (socket.AF_INET, socket.AF_INET6)
            and _raw_type(sock) == socket.SOCK_STREAM
            and sock.proto == socket.IPPROTO_TCP):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# The hot methods are the core's own (see the module docstring).
@core_methods('write', 'is_closing', 'is_reading', 'pause_reading', 'resume_reading',
              'get_write_buffer_size', 'close', 'abort')
class SocketTransport(CoreTransport, CoreWriteFlow, transports.Transport):
    """asyncio's socket transport contract, with a native core."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    # Read by __del__, which may run even if __init__ failed early.
    _core = None

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        super().__init__(extra)
        self._loop = loop
        add_socket_extra(self._extra, sock)
        self._sock_fd = sock.fileno()
        self._server = server
        core = stream_transport_core(loop, sock, self, protocol)
        self._core = core
        _set_nodelay(sock)
        if server is not None:
            server._attach(self)
        loop._transports[self._sock_fd] = self
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only once connection_made() has run.
        loop.call_soon(core._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self):
        core = self._core
        info = [self.__class__.__name__]
        if core is None or core._sock is None:
            info.append('closed')
        elif core._closing:
            info.append('closing')
        info.append(f'fd={self._sock_fd}')
        if core is not None and core._sock is not None and not self._loop.is_closed():
            reading, writing = core._watching
            info.append(f"read={'polling' if reading else 'idle'}")
            info.append(f"write=<{'polling' if writing else 'idle'}, "
                        f"bufsize={core.get_write_buffer_size()}>")
        return '<{}>'.format(' '.join(info))

    def __del__(self, _warn=warnings.warn):
        core = self._core
        if core is not None and core._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            core._sock.close()

    # -- the rest of the Transport API ----------------------------------------

    def writelines(self, list_of_data):
        if _WRITELINES_CHECKS:
            # Python 3.12+ names writelines in these errors.
            if self._core._eof:
                raise RuntimeError('Cannot call writelines() after write_eof()')
            if self._core._sendfile_waiting:
                raise RuntimeError('unable to writelines; sendfile is in progress')
        self.write(b''.join(list_of_data))

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    @property
    def _sock(self):
        return self._core._sock

    @property
    def _paused(self):
        return self._core._paused

    @property
    def _eof(self):
        return self._core._eof

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()

    def _force_close(self, exc):
        self._core._force_close(exc)

    # -- lifecycle and error paths, called by the core ---------------------------

    def _call_connection_lost(self, exc):
        sock, protocol, connected, empty_waiter = self._core._detach()
        try:
            if connected and protocol is not None:
                protocol.connection_lost(exc)
        finally:
            if sock is not None:
                sock.close()
            self._loop = None
            server = self._server
            if server is not None:
                server._detach(self)
                self._server = None
            if empty_waiter is not None and not empty_waiter.done():
                empty_waiter.set_exception(ConnectionError("Connection is closed by peer"))

