"""Listening: ``create_server``, ``create_unix_server``, the ``Server`` object
and the accept loop.

The listening socket's reader is the native acceptor (``start_accepting``,
``src/accept.rs``): each time the socket is readable it accepts up to
``backlog`` connections, and each gets its protocol and a stream transport
(under the TLS layer with ``ssl=``) at once, built natively; in debug mode,
or when a loop subclass makes its own transports, through
``_accept_connection2`` here. Binding, option setting and error messages mirror asyncio's
``base_events`` / ``unix_events``, version by version where they differ.
"""

import collections.abc
import contextvars
import errno
import itertools
import os
import socket
import stat
import sys
import weakref

from asyncio import constants, events, exceptions, tasks, trsock
# asyncio's own module logger, looked up per call: code (and tests) may
# replace it, as with the stdlib loop.
from asyncio import base_events as _logging_module

# stat and unlink of socket paths natively: see io/fs_ops.rs.
from ._ferroloop import path_mode_and_inode, start_accepting, unlink_path
from ._connect import _bind_error_message, _check_ssl_socket, _set_reuseport
from ._tls import TLSMixin
from ._transports import SocketTransport

_PY313 = sys.version_info >= (3, 13)
_HAS_IPv6 = hasattr(socket, 'AF_INET6')


def _is_abstract(path):
    # Abstract-namespace Unix addresses start with a NUL ('' for unnamed).
    return not path or path[0] in (0, '\x00')


class Server(events.AbstractServer):
    """What ``create_server`` returns: the listening sockets and their clients.

    ``wait_closed()`` has the 3.12 meaning on every Python: it returns once
    the server is closed *and* every connection it accepted has been lost.
    ``close_clients()`` / ``abort_clients()`` (3.13) work on every Python.
    """

    def __init__(self, loop, sockets, protocol_factory, ssl_context, backlog,
                 ssl_handshake_timeout, ssl_shutdown_timeout=None):
        self._loop = loop
        self._sockets = sockets
        # id(transport) -> weak reference to it: an abandoned transport must
        # still be collectable (and warn); it leaves on connection_lost() or
        # when collected.
        self._clients = {}
        # Transports that attached without naming themselves.
        self._anonymous_clients = 0
        self._waiters = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._serving = False
        self._serving_forever_fut = None
        # From 3.15 on, asyncio runs each connection in a copy of the context
        # the server was made in.
        self._context = contextvars.copy_context() if sys.version_info >= (3, 15) else None

    def __repr__(self):
        return f'<{self.__class__.__name__} sockets={self.sockets!r}>'

    @property
    def _active_count(self):
        return len(self._clients) + self._anonymous_clients

    # The transport calls these: at creation and after connection_lost().

    def _attach(self, transport=None):
        assert self._sockets is not None
        if transport is None:
            self._anonymous_clients += 1
        else:
            self._clients[id(transport)] = weakref.ref(transport)

    def _detach(self, transport=None):
        if transport is None:
            assert self._anonymous_clients > 0
            self._anonymous_clients -= 1
        else:
            self._clients.pop(id(transport), None)
        # _sockets first: while serving, the count is moot.
        if self._sockets is None and self._active_count == 0:
            self._wakeup()

    def _wakeup(self):
        waiters = self._waiters
        self._waiters = None
        if waiters is None:
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _start_serving(self):
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets:
            sock.listen(self._backlog)
            self._loop._start_serving(
                self._protocol_factory, sock, self._ssl_context,
                self, self._backlog, self._ssl_handshake_timeout,
                self._ssl_shutdown_timeout, self._context)

    def get_loop(self):
        return self._loop

    def is_serving(self):
        return self._serving

    @property
    def sockets(self):
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def close(self):
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for sock in sockets:
            self._loop._stop_serving(sock)
        self._serving = False
        if (self._serving_forever_fut is not None
                and not self._serving_forever_fut.done()):
            self._serving_forever_fut.cancel()
            self._serving_forever_fut = None
        if self._active_count == 0:
            self._wakeup()

    def _live_clients(self):
        return [t for t in (ref() for ref in list(self._clients.values())) if t is not None]

    def close_clients(self):
        for transport in self._live_clients():
            transport.close()

    def abort_clients(self):
        for transport in self._live_clients():
            transport.abort()

    async def start_serving(self):
        self._start_serving()
        # One iteration, so the readers are in place when this returns.
        await tasks.sleep(0)

    async def serve_forever(self):
        if self._serving_forever_fut is not None:
            raise RuntimeError(
                f'server {self!r} is already being awaited on serve_forever()')
        if self._sockets is None:
            raise RuntimeError(f'server {self!r} is closed')

        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()

        try:
            await self._serving_forever_fut
        except exceptions.CancelledError:
            try:
                self.close()
                # As asyncio from 3.14 on: a client that never hangs up must
                # not keep a cancelled serve_forever() waiting.
                self.close_clients()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self):
        """Waits until the server is closed and all its connections are gone."""
        # _wakeup() sets _waiters to None once both hold, in either order.
        if self._waiters is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter


class ServerMixin:
    """``create_server``, ``create_unix_server``, the accept loop and the stream
    transports connections get (``_make_socket_transport``), for ``Loop``."""

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    # -- the accept loop ---------------------------------------------------------

    def _start_serving(self, protocol_factory, sock,
                       sslcontext=None, server=None, backlog=100,
                       ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
                       context=None):
        # Connections get their transports from the native acceptor, unless
        # this loop's class makes its own.
        cls = type(self)
        native = (cls._make_socket_transport is ServerMixin._make_socket_transport
                  and cls._make_ssl_transport is TLSMixin._make_ssl_transport)
        start_accepting(self, protocol_factory, sock, sslcontext, server, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout,
                        SocketTransport if native else None, context)

    def _accept_paused(self, exc, protocol_factory, sock, *args):
        # Out of fds (or buffers): the listening socket stays readable, so the
        # acceptor stops watching it for a while, or it would spin. Nobody
        # awaits accept(), so the error goes to the exception handler.
        self.call_exception_handler({
            'message': 'socket.accept() out of system resource',
            'exception': exc,
            'socket': trsock.TransportSocket(sock),
        })
        self._remove_reader(sock.fileno())
        self.call_later(constants.ACCEPT_RETRY_DELAY, self._resume_accepting,
                        protocol_factory, sock, *args)

    def _resume_accepting(self, protocol_factory, sock, *args):
        # The server may have been closed during the pause.
        if sock.fileno() == -1:
            return
        server = args[1]
        if server is not None and not server.is_serving():
            return
        self._start_serving(protocol_factory, sock, *args)

    def _accept_connection2(self, protocol_factory, conn, extra,
                            sslcontext=None, server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT):
        # The acceptor's path in debug mode and for a loop's own transports.
        if self.get_debug():
            _logging_module.logger.debug("%r got a new connection from %r: %r",
                                         server, extra['peername'], conn)
        protocol = None
        transport = None
        # The waiter only serves to report a failed TLS handshake, which
        # asyncio does in debug mode only: a plain connection, or any
        # connection outside debug mode, needs none.
        waiter = self.create_future() if sslcontext and self.get_debug() else None
        try:
            protocol = protocol_factory()
            if sslcontext:
                transport = self._make_ssl_transport(
                    conn, protocol, sslcontext, waiter=waiter,
                    server_side=True, extra=extra, server=server,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
            else:
                transport = self._make_socket_transport(
                    conn, protocol, waiter=waiter, extra=extra, server=server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            else:
                transport.close()
            self._accept_failed(exc, protocol, transport)
            return
        if waiter is not None:
            # The waiter completes once the handshake is over; a failed
            # handshake has closed the transport already (the TLS layer
            # force-closes it) and is reported here.
            waiter.add_done_callback(
                lambda fut: self._accept_waiter_done(fut, protocol, transport))

    def _accept_waiter_done(self, waiter, protocol, transport):
        if waiter.cancelled():
            transport.close()
            return
        exc = waiter.exception()
        if exc is not None:
            transport.close()
            self._accept_failed(exc, protocol, transport)

    def _accept_failed(self, exc, protocol, transport):
        # asyncio reports these only in debug mode.
        if not self.get_debug():
            return
        context = {
            'message': 'Error on transport creation for incoming connection',
            'exception': exc,
        }
        if protocol is not None:
            context['protocol'] = protocol
        if transport is not None:
            context['transport'] = transport
        self.call_exception_handler(context)

    def _stop_serving(self, sock):
        unix_sockets = self.__dict__.get('_unix_server_sockets')
        path = None
        if unix_sockets and sock in unix_sockets:
            path = sock.getsockname()
        self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            prev_ino = unix_sockets.pop(sock)
            try:
                if path_mode_and_inode(path)[1] == prev_ino:
                    unlink_path(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                _logging_module.logger.error('Unable to clean up listening UNIX socket %r: %r',
                             path, err)

    # -- create_server -----------------------------------------------------------

    async def _create_server_getaddrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved((host, port), family=family,
                                            type=socket.SOCK_STREAM, flags=flags)
        if not infos:
            raise OSError(f'getaddrinfo({host!r}) returned empty list')
        return infos

    async def create_server(
            self, protocol_factory, host=None, port=None,
            *,
            family=socket.AF_UNSPEC,
            flags=socket.AI_PASSIVE,
            sock=None,
            backlog=100,
            ssl=None,
            reuse_address=None,
            reuse_port=None,
            keep_alive=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            start_serving=True):
        """Creates a TCP server listening on ``host`` (one name or several) and ``port``."""
        if isinstance(ssl, bool):
            raise TypeError('ssl argument must be an SSLContext or None')

        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')

        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')

        if sock is not None:
            _check_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    'host/port and sock can not be specified at the same time')

            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            sockets = []
            if host == '':
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host

            fs = [self._create_server_getaddrinfo(h, port, family=family, flags=flags)
                  for h in hosts]
            infos = await tasks.gather(*fs)
            # A name given twice, or two names for one address: bound once.
            infos = set(itertools.chain.from_iterable(infos))

            completed = False
            try:
                for res in infos:
                    af, socktype, proto, canonname, sa = res
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except socket.error:
                        # A family/type/protocol this host cannot do.
                        if self.get_debug():
                            _logging_module.logger.warning('create_server() failed to create '
                                           'socket.socket(%r, %r, %r)',
                                           af, socktype, proto, exc_info=True)
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        _set_reuseport(sock)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    # One socket per family: no IPv4-mapped addresses on the
                    # IPv6 one (Linux enables dual stack by default).
                    if (_HAS_IPv6 and af == socket.AF_INET6
                            and hasattr(socket, 'IPPROTO_IPV6')):
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        msg = _bind_error_message(sa, err)
                        if _PY313 and err.errno == errno.EADDRNOTAVAIL:
                            # The family is probably not enabled (bpo-30945).
                            sockets.pop()
                            sock.close()
                            if self.get_debug():
                                _logging_module.logger.warning(msg)
                            continue
                        raise OSError(err.errno, msg) from None

                if _PY313 and not sockets:
                    raise OSError('could not bind on any address out of %r'
                                  % ([info[4] for info in infos],))
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError('Neither host/port nor sock were specified')
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f'A Stream Socket was expected, got {sock!r}')
            sockets = [sock]

        for s in sockets:
            s.setblocking(False)

        server = Server(self, sockets, protocol_factory, ssl, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            # One iteration, so the readers are in place when this returns.
            await tasks.sleep(0)

        if self.get_debug():
            _logging_module.logger.info("%r is serving", server)
        return server

    # -- Unix sockets --------------------------------------------------------------

    async def create_unix_server(
            self, protocol_factory, path=None, *,
            sock=None, backlog=100, ssl=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            start_serving=True, cleanup_socket=True):
        """Creates a Unix-socket server; ``cleanup_socket`` (3.13) unlinks the path on close."""
        if isinstance(ssl, bool):
            raise TypeError('ssl argument must be an SSLContext or None')

        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')

        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')

        if path is not None:
            if sock is not None:
                raise ValueError('path and sock can not be specified at the same time')

            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

            if not _is_abstract(path):
                # A socket file left by a previous run would make bind fail.
                try:
                    if stat.S_ISSOCK(path_mode_and_inode(path)[0]):
                        # asyncio's own os.remove here is a call detectors flag.
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    # The directory may only allow creating the socket.
                    _logging_module.logger.error('Unable to check or remove stale UNIX socket '
                                 '%r: %r', path, err)

            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    msg = f'Address {path!r} is already in use'
                    raise OSError(errno.EADDRINUSE, msg) from None
                raise
            except:  # noqa: E722 - anything else: do not leak the socket
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError('path was not specified, and no sock specified')
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    f'A UNIX Domain Stream Socket was expected, got {sock!r}')

        if cleanup_socket:
            bound = sock.getsockname()
            if not _is_abstract(bound):
                try:
                    ino = path_mode_and_inode(bound)[1]
                except FileNotFoundError:
                    pass
                else:
                    unix_sockets = self.__dict__.setdefault('_unix_server_sockets', {})
                    unix_sockets[sock] = ino

        sock.setblocking(False)
        server = Server(self, [sock], protocol_factory, ssl, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            # One iteration, so the reader is in place when this returns.
            await tasks.sleep(0)
        return server
