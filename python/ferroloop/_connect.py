"""Opening stream connections: ``create_connection``, ``create_unix_connection``,
``connect_accepted_socket``, and ``loop.sendfile`` on a stream transport.

Everything here runs once per connection, so it stays in Python and mirrors
asyncio's argument checks and messages (``base_events`` / ``unix_events``),
version by version where they differ. The per-packet work happens in the
transport that ``_make_socket_transport`` builds.

With ``ssl``, the arguments are checked exactly as asyncio checks them and
the socket goes to ``_make_ssl_transport`` (tls.py).
"""

import collections
import itertools
import os
import socket
import sys

from asyncio import constants, exceptions, protocols, staggered
# asyncio's own module logger, looked up per call: code (and tests) may
# replace it, as with the stdlib loop.
from asyncio import base_events as _logging_module

from ._ferroloop import track_transport

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - Python built without ssl
    _ssl = None

_PY313 = sys.version_info >= (3, 13)


def _set_reuseport(sock):
    if not hasattr(socket, 'SO_REUSEPORT'):
        raise ValueError('reuse_port not supported by socket module')
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError('reuse_port not supported by socket module, '
                         'SO_REUSEPORT defined but not implemented.')


def _check_ssl_socket(sock):
    if _ssl is not None and isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _interleave_addrinfos(addrinfos, first_address_family_count=1):
    """Reorders addrinfos so that families alternate (RFC 8305 section 4).

    The first family keeps ``first_address_family_count`` addresses at the head.
    """
    by_family = collections.OrderedDict()
    for info in addrinfos:
        by_family.setdefault(info[0], []).append(info)
    groups = list(by_family.values())
    head = []
    if first_address_family_count > 1:
        head = groups[0][:first_address_family_count - 1]
        del groups[0][:first_address_family_count - 1]
    rest = [info for info in itertools.chain.from_iterable(
        itertools.zip_longest(*groups)) if info is not None]
    return head + rest


def _bind_error_message(addr, exc):
    # 3.13 lowers the whole str() (with its "[errno N]" prefix); before, strerror.
    detail = str(exc).lower() if _PY313 else (exc.strerror or str(exc)).lower()
    return f'error while attempting to bind on address {addr!r}: {detail}'


class _SendfileFallbackProtocol(protocols.Protocol):
    """Stands in for the transport's protocol while ``sendfile`` writes chunks.

    Reading is paused; ``drain()`` waits while the transport is above its high
    watermark, as asyncio's fallback does.
    """

    def __init__(self, transp):
        self._transport = transp
        self._proto = transp.get_protocol()
        self._should_resume_reading = transp.is_reading()
        self._should_resume_writing = _writing_paused(transp)
        transp.pause_reading()
        transp.set_protocol(self)
        if self._should_resume_writing:
            self._write_ready_fut = transp._loop.create_future()
        else:
            self._write_ready_fut = None

    async def drain(self):
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        fut = self._write_ready_fut
        if fut is None:
            return
        await fut

    def connection_made(self, transport):
        raise RuntimeError("Invalid state: "
                           "connection should have been established already.")

    def connection_lost(self, exc):
        fut = self._write_ready_fut
        if fut is not None and not fut.done():
            # The peer went away before everything was written.
            fut.set_exception(exc if exc is not None else
                              ConnectionError("Connection is closed by peer"))
        self._proto.connection_lost(exc)

    def pause_writing(self):
        if self._write_ready_fut is not None:
            return
        self._write_ready_fut = self._transport._loop.create_future()

    def resume_writing(self):
        fut = self._write_ready_fut
        if fut is None:
            return
        if not fut.done():
            fut.set_result(False)
        self._write_ready_fut = None

    def data_received(self, data):
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self):
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self):
        self._transport.set_protocol(self._proto)
        if self._should_resume_reading:
            self._transport.resume_reading()
        if self._write_ready_fut is not None:
            # Nobody waits on it any more: the real protocol is back.
            self._write_ready_fut.cancel()
        if self._should_resume_writing:
            self._proto.resume_writing()


def _writing_paused(transp):
    paused = getattr(transp, '_protocol_paused', None)
    if paused is not None:
        return bool(paused)
    # A transport without asyncio's flag: above the high watermark means paused.
    try:
        return transp.get_write_buffer_size() > transp.get_write_buffer_limits()[1]
    except (AttributeError, NotImplementedError):
        return False


class ConnectMixin:
    """``create_connection`` and friends, for ``ferroloop.Loop``."""

    # -- the transport registry ------------------------------------------------

    def _ensure_fd_no_transport(self, fd):
        """Refuses to let anything else watch an fd that a live transport owns."""
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transports = getattr(self, '_transports', None)
        if not transports:
            return
        ref = transports.get(fileno)
        transport = ref() if ref is not None else None
        if transport is not None and not transport.is_closing():
            raise RuntimeError(
                f'File descriptor {fd!r} is used by transport {transport!r}')

    # -- create_connection -----------------------------------------------------

    async def _connect_sock(self, exceptions, addr_info, local_addr_infos=None,
                            connected=None):
        """Creates, binds and connects one socket; records its errors in ``exceptions``."""
        my_exceptions = []
        exceptions.append(my_exceptions)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue  # a local address of another family
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        my_exceptions.append(
                            OSError(exc.errno, _bind_error_message(laddr, exc)))
                else:
                    if my_exceptions:
                        raise my_exceptions.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            if connected is not None:
                connected.append(sock)
            return sock
        except OSError as exc:
            my_exceptions.append(exc)
            if sock is not None:
                sock.close()
            raise
        except:  # noqa: E722 - cancellation too: never leak the socket
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions = my_exceptions = None

    async def create_connection(
            self, protocol_factory, host=None, port=None,
            *, ssl=None, family=0,
            proto=0, flags=0, sock=None,
            local_addr=None, server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            happy_eyeballs_delay=None, interleave=None,
            all_errors=False):
        """Connects to a TCP server; returns ``(transport, protocol)``."""
        if server_hostname is not None and not ssl:
            raise ValueError('server_hostname is only meaningful with ssl')

        if server_hostname is None and ssl:
            # The host doubles as the name to verify; without one the caller
            # must say (server_hostname='' skips the check).
            if not host:
                raise ValueError('You must set server_hostname '
                                 'when using ssl without a host')
            server_hostname = host

        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')

        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')

        if sock is not None:
            _check_ssl_socket(sock)

        if happy_eyeballs_delay is not None and interleave is None:
            # Happy eyeballs alternates families unless told otherwise.
            interleave = 1

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    'host/port and sock can not be specified at the same time')

            infos = await self._ensure_resolved(
                (host, port), family=family,
                type=socket.SOCK_STREAM, proto=proto, flags=flags)
            if not infos:
                raise OSError('getaddrinfo() returned empty list')

            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(
                    local_addr, family=family,
                    type=socket.SOCK_STREAM, proto=proto, flags=flags)
                if not laddr_infos:
                    raise OSError('getaddrinfo() returned empty list')
            else:
                laddr_infos = None

            if interleave:
                infos = _interleave_addrinfos(infos, interleave)

            exceptions = []
            if happy_eyeballs_delay is None:
                for addrinfo in infos:
                    try:
                        sock = await self._connect_sock(exceptions, addrinfo, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                connected = []
                try:
                    # Lambdas over this frame's variables, not partials, and
                    # only the winner taken from the result: the errors must
                    # not be reachable from their own tracebacks (a cycle
                    # that keeps every attempt's frames alive until the
                    # collector runs).
                    sock = (await staggered.staggered_race(
                        (lambda addrinfo=addrinfo: self._connect_sock(
                            exceptions, addrinfo, laddr_infos, connected)
                         for addrinfo in infos),
                        happy_eyeballs_delay, loop=self))[0]
                finally:
                    # Two attempts may connect in the same iteration; only
                    # the winner is used, the others must not leak.
                    for other in connected:
                        if other is not sock:
                            other.close()
                    connected = None

            if sock is None:
                exceptions = [exc for sub in exceptions for exc in sub]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed", exceptions)
                    if len(exceptions) == 1:
                        raise exceptions[0]
                    model = str(exceptions[0])
                    if all(str(exc) == model for exc in exceptions):
                        raise exceptions[0]
                    # Different errors: show them all.
                    raise OSError('Multiple exceptions: {}'.format(
                        ', '.join(str(exc) for exc in exceptions)))
                finally:
                    exceptions = None

        else:
            if sock is None:
                raise ValueError(
                    'host and port was not specified and no sock specified')
            if sock.type != socket.SOCK_STREAM:
                # AF_UNIX stream sockets are welcome here too, as in asyncio.
                raise ValueError(f'A Stream Socket was expected, got {sock!r}')

        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self.get_debug():
            sock = transport.get_extra_info('socket')
            _logging_module.logger.debug("%r connected to %s:%r: (%r, %r)",
                         sock, host, port, transport, protocol)
        return transport, protocol

    async def _create_connection_transport(
            self, sock, protocol_factory, ssl,
            server_hostname, server_side=False,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None):
        sock.setblocking(False)
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            if ssl:
                sslcontext = None if isinstance(ssl, bool) else ssl
                kwargs = {}
                if ssl_handshake_timeout is not None:
                    kwargs['ssl_handshake_timeout'] = ssl_handshake_timeout
                if ssl_shutdown_timeout is not None:
                    kwargs['ssl_shutdown_timeout'] = ssl_shutdown_timeout
                transport = self._make_ssl_transport(
                    sock, protocol, sslcontext, waiter, server_side=server_side,
                    server_hostname=server_hostname, **kwargs)
            else:
                transport = self._make_socket_transport(sock, protocol, waiter)
        except BaseException:
            # Nothing owns the socket yet (a failing protocol factory, TLS
            # arguments refused): do not leave it to the collector.
            sock.close()
            raise

        try:
            await waiter
        except:  # noqa: E722 - cancellation too
            transport.close()
            # The waiter holds the exception whose traceback holds this frame.
            waiter = None
            raise

        return transport, protocol

    # -- Unix sockets ------------------------------------------------------------

    async def create_unix_connection(
            self, protocol_factory, path=None, *,
            ssl=None, sock=None,
            server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None):
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError('you have to pass server_hostname when using ssl')
        else:
            if server_hostname is not None:
                raise ValueError('server_hostname is only meaningful with ssl')
            if ssl_handshake_timeout is not None:
                raise ValueError('ssl_handshake_timeout is only meaningful with ssl')
            if ssl_shutdown_timeout is not None:
                raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')

        if path is not None:
            if sock is not None:
                raise ValueError('path and sock can not be specified at the same time')
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except:  # noqa: E722 - cancellation too
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError('no path and sock were specified')
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    f'A UNIX Domain Stream Socket was expected, got {sock!r}')
            sock.setblocking(False)

        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    # -- an accepted socket ----------------------------------------------------

    async def connect_accepted_socket(
            self, protocol_factory, sock,
            *, ssl=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None):
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f'A Stream Socket was expected, got {sock!r}')

        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')

        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')

        _check_ssl_socket(sock)

        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, '', server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self.get_debug():
            sock = transport.get_extra_info('socket')
            _logging_module.logger.debug("%r handled: (%r, %r)", sock, transport, protocol)
        return transport, protocol

    # -- sendfile over a transport -----------------------------------------------

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Sends a file over a transport; returns the number of bytes sent.

        Zero-copy ``os.sendfile`` on a plain socket transport, else (when
        ``fallback`` allows) chunks written through ``transport.write``.
        """
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, '_sendfile_compatible',
                       constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(
                f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise

        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not "
                f"supported for transport {transport!r}")

        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transp, file, offset, count):
        # The socket is lent to sock_sendfile: the transport stops reading,
        # its write buffer drains first, and writes raise meanwhile.
        fd = transp._sock_fd
        transports = getattr(self, '_transports', None)
        if transports is not None:
            transports.pop(fd, None)
        resume_reading = transp.is_reading()
        transp.pause_reading()
        try:
            await transp._make_empty_waiter()
            try:
                sent = await self.sock_sendfile(transp._sock, file, offset, count,
                                                fallback=False)
                # Bytes written on the transport's socket, for the metrics.
                transp._core._count_sent(sent)
                return sent
            finally:
                transp._reset_empty_waiter()
        finally:
            if resume_reading:
                transp.resume_reading()
            if transports is not None and not transp.is_closing():
                track_transport(self, fd, transp)

    async def _sendfile_fallback(self, transp, file, offset, count):
        # Offset 0 too from 3.14 on, as in _sock_sendfile_fallback.
        if offset or (sys.version_info >= (3, 14) and hasattr(file, 'seek')):
            file.seek(offset)
        blocksize = min(count, 16384) if count else 16384
        buf = bytearray(blocksize)
        total_sent = 0
        proto = _SendfileFallbackProtocol(transp)
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        return total_sent
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total_sent  # EOF
                await proto.drain()
                # A copy: the transport may hold on to what it could not send
                # yet, and ``buf`` is refilled by the next read.
                transp.write(bytes(view[:read]))
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, 'seek'):
                file.seek(offset + total_sent)
            await proto.restore()
