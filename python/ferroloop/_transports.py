"""The stream transport for TCP and Unix sockets: ``SocketTransport``.

A real ``asyncio.Transport`` subclass, so libraries that check types accept
it. Its read and write paths, buffer and close state machine are the native
``StreamTransportCore``; the hot methods (``write``, ``is_closing``, ...) are
the core's own bound methods, set on the instance at first use, so calling
them runs no Python frame. What runs once per connection or on errors stays
here.
"""

import sys
import warnings

from asyncio import constants, selector_events, transports

from ._ferroloop import init_socket_transport
from ._core_transport import CoreTransport, CoreWriteFlow, core_methods

_WRITELINES_CHECKS = sys.version_info >= (3, 12)

# asyncio's words and steps changed within release series, so they are read
# from its own code. How its write() starts the TypeError for data that is no
# bytes-like object (the core adds the type's name):
_STDLIB = selector_events._SelectorSocketTransport
WRITE_TYPE_PREFIX = next(
    (c for c in _STDLIB.write.__code__.co_consts
     if isinstance(c, str) and c.startswith('data argument must be')),
    'data argument must be a bytes-like object, not ')
# Whether its writelines() drops the data of a lost connection unseen and
# skips empty items (3.14).
_WRITELINES_LOST_FIRST = '_conn_lost' in _STDLIB.writelines.__code__.co_names
# One byte for write() to count and drop as written to a lost connection.
_DROPPED = b'\0'


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
        # The extra info, the native core, TCP_NODELAY, the server's and the
        # loop's records, then connection_made() and reading, scheduled in
        # asyncio's order. A server's accept loop runs the same function on a
        # transport it allocates itself.
        init_socket_transport(self, loop, sock, protocol, waiter, extra, server)

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
            # As asyncio (3.13): the server stops counting it.
            if self._server is not None:
                self._server._detach(self)

    # -- the rest of the Transport API ----------------------------------------

    def writelines(self, list_of_data):
        if not _WRITELINES_CHECKS:
            self.write(b''.join(list_of_data))
            return
        # Python 3.12+ names writelines in these errors, skips an empty
        # list, and takes a memoryview of each item (whose errors it raises).
        if self._core._eof:
            raise RuntimeError('Cannot call writelines() after write_eof()')
        if self._core._sendfile_waiting:
            raise RuntimeError('unable to writelines; sendfile is in progress')
        if not list_of_data:
            return
        if _WRITELINES_LOST_FIRST:
            if self._core._conn_lost:
                # write() counts it and warns past asyncio's threshold, as
                # asyncio's writelines() does here.
                self.write(_DROPPED)
                return
            list_of_data = [item for item in list_of_data if item]
        try:
            data = b''.join(list_of_data)
        except TypeError:
            for item in list_of_data:
                if not memoryview(item).c_contiguous:
                    # What write() raises for it: asyncio would fail sending it.
                    raise BufferError('memoryview: underlying buffer is not C-contiguous')
            raise
        self.write(data)

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

