"""TLS over ferroloop's transports: ``ssl=`` everywhere and ``start_tls``.

The state machine is native (``TLSProtocolCore``, asyncio's ``SSLProtocol``
contract); the user's ``ssl.SSLContext`` does the cryptography through an
``ssl.SSLObject`` over memory BIOs, so every context option keeps working.
Here: ``SSLTransport``, the ``asyncio.Transport`` the application sees, and
the loop's TLS methods. ``new_ssl_protocol`` (native, asyncio's
``SSLProtocol(...)`` with its checks and errors) builds both halves.
"""

import sys
import warnings

from asyncio import constants, protocols, streams, transports

from ._core_transport import watermarks
from ._ferroloop import TLSProtocolCore, new_ssl_protocol

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None


class SSLProtocol(TLSProtocolCore, protocols.BufferedProtocol):
    """The TLS layer: the protocol of the transport below it."""

    __slots__ = ()


class SSLTransport(transports._FlowControlMixin, transports.Transport):
    """The transport a TLS connection's application protocol sees.

    ``new_ssl_protocol`` (native) makes it with its layer and sets its
    attributes: ``_loop``, ``_ssl_protocol``, ``_closed``, and ``write``
    bound to the layer's own method.
    """

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def get_extra_info(self, name, default=None):
        return self._ssl_protocol._get_extra_info(name, default)

    def set_protocol(self, protocol):
        self._ssl_protocol._set_app_protocol(protocol)

    def get_protocol(self):
        return self._ssl_protocol._app_protocol

    if sys.version_info >= (3, 14):
        def is_closing(self):
            return self._closed or self._ssl_protocol._is_transport_closing()
    else:
        def is_closing(self):
            return self._closed

    def write(self, data):
        # Bound over by the core's own method per instance; this is what
        # runs once close() has let go of the protocol (as asyncio: an error).
        self._ssl_protocol._app_write(data)

    def close(self):
        if not self._closed:
            self._closed = True
            self._ssl_protocol._start_shutdown()
        else:
            # A second close lets go of the TLS layer, so a protocol that
            # keeps its transport makes no reference cycle (asyncio does so).
            self._ssl_protocol = None
            self.__dict__.pop('write', None)

    def __del__(self, _warn=warnings.warn):
        if not self._closed:
            self._closed = True
            # asyncio's own words, so filters written for it keep matching.
            _warn("unclosed transport <asyncio._SSLProtocolTransport object>",
                  ResourceWarning)

    def is_reading(self):
        return not self._ssl_protocol._app_reading_paused

    def pause_reading(self):
        self._ssl_protocol._pause_reading()

    def resume_reading(self):
        self._ssl_protocol._resume_reading()

    def set_write_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_write_buffer_limits(*watermarks(high, low))
        self._ssl_protocol._control_app_writing()

    def get_write_buffer_limits(self):
        return (self._ssl_protocol._outgoing_low_water,
                self._ssl_protocol._outgoing_high_water)

    def get_write_buffer_size(self):
        return self._ssl_protocol._get_write_buffer_size()

    def set_read_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_read_buffer_limits(*watermarks(high, low))
        self._ssl_protocol._control_ssl_reading()

    def get_read_buffer_limits(self):
        return (self._ssl_protocol._incoming_low_water,
                self._ssl_protocol._incoming_high_water)

    def get_read_buffer_size(self):
        return self._ssl_protocol._get_read_buffer_size()

    @property
    def _protocol_paused(self):
        # Read by the sendfile fallback's flow control.
        return self._ssl_protocol._app_writing_paused

    def writelines(self, list_of_data):
        self._ssl_protocol._write_appdata(list_of_data)

    def write_eof(self):
        # TLS has no half-close: asyncio refuses write_eof() on SSL this way.
        raise NotImplementedError

    def can_write_eof(self):
        return False

    def abort(self):
        self._force_close(None)

    def _force_close(self, exc):
        self._closed = True
        if self._ssl_protocol is not None:
            self._ssl_protocol._abort(exc)

    def _test__append_write_backlog(self, data):
        # asyncio's test hook: queue data without sending it.
        self._ssl_protocol._append_write_backlog(data)


class TLSMixin:

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None,
                            extra=None, server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT):
        ssl_protocol = new_ssl_protocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def start_tls(self, transport, protocol, sslcontext, *,
                        server_side=False, server_hostname=None,
                        ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        if ssl is None:
            raise RuntimeError('Python ssl module is not available')
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f'sslcontext is expected to be an instance of ssl.SSLContext, '
                f'got {sslcontext!r}')
        if not getattr(transport, '_start_tls_compatible', False):
            raise TypeError(
                f'transport {transport!r} is not supported by start_tls()')
        waiter = self.create_future()
        ssl_protocol = new_ssl_protocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False)
        # Paused first, so the TLS protocol sees no data before connection_made().
        transport.pause_reading()
        # What a server's stream reader already took off the socket (the
        # client's hello, when it read before start_tls) belongs to TLS.
        if server_side and isinstance(protocol, streams.StreamReaderProtocol):
            reader = getattr(protocol, '_stream_reader', None)
            if reader is not None and reader._buffer:
                ssl_protocol._incoming.write(reader._buffer)
                reader._buffer.clear()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            # The waiter holds the exception whose traceback holds this frame.
            waiter = None
            raise
        return ssl_protocol._app_transport
