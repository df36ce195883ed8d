"""Datagram endpoints: ``create_datagram_endpoint`` and ``DatagramTransport``.

``DatagramTransport`` is a real ``asyncio.DatagramTransport`` subclass whose
receive path, ``sendto``, write queue, flow control and close state machine
are the native ``DatagramTransportCore`` (src/datagram_transport.rs); the hot
methods are the core's own, bound on each instance. Creating endpoints runs
once per endpoint, so it stays here and follows asyncio's
``create_datagram_endpoint`` (``base_events``) check by check, message by
message, version by version where they differ.
"""

import os
import socket
import stat
import sys
import warnings

from asyncio import transports
# asyncio's own module logger, looked up per call as in connect.py.
from asyncio import base_events as _logging_module

from ._ferroloop import add_socket_extra, datagram_transport_core, start_transport
from ._core_transport import CoreTransport, CoreWriteFlow, core_methods
from ._connect import _set_reuseport

_PY311 = sys.version_info >= (3, 11)
_PY313 = sys.version_info >= (3, 13)


_unset = object()


@core_methods('sendto', 'is_closing', 'close', 'abort', 'get_write_buffer_size',
              'is_reading', 'pause_reading', 'resume_reading')
class DatagramTransport(CoreTransport, CoreWriteFlow, transports.Transport, transports.DatagramTransport):
    """asyncio's selector datagram transport contract, with a native core.

    An ``asyncio.Transport`` too, as asyncio's own datagram transport is.
    """

    max_size = 256 * 1024  # asked of each recvfrom(), as asyncio's

    # Read by __del__, which may run even if __init__ failed early.
    _core = None

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        super().__init__(extra)
        add_socket_extra(self._extra, sock)
        core = datagram_transport_core(loop, sock, self, protocol, address,
                                       bool(self._extra['peername']), self.max_size)
        # connection_made(), then reading, then the waiter (asyncio's order).
        start_transport(self, loop, sock.fileno(), core, protocol, waiter)

    def __repr__(self):
        core = self._core
        info = [self.__class__.__name__]
        if core is None or core._sock is None:
            info.append('closed')
        elif core._closing:
            info.append('closing')
        info.append(f'fd={self._sock_fd}')
        if (core is not None and core._sock is not None and self._loop is not None
                and not self._loop.is_closed()):
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

    # -- the rest of the transport API ------------------------------------------

    @property
    def _sock(self):
        return self._core._sock

    @property
    def _address(self):
        return self._core._address

    @property
    def _paused(self):
        return self._core._paused

    @property
    def _buffer_size(self):
        return self._core.get_write_buffer_size()

    def _force_close(self, exc):
        self._core._force_close(exc)

    # -- lifecycle and error paths, called by the core ---------------------------

    def _call_connection_lost(self, exc):
        sock, protocol, connected = self._core._detach()
        try:
            if connected and protocol is not None:
                protocol.connection_lost(exc)
        finally:
            if sock is not None:
                sock.close()
            self._loop = None

def _check_sock_type(sock):
    if _PY313:
        # 3.13 takes any socket that is not a stream one.
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(f'A datagram socket was expected, got {sock!r}')
    elif sock.type != socket.SOCK_DGRAM:
        raise ValueError(f'A UDP Socket was expected, got {sock!r}')


class DatagramMixin:

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None,
                                 extra=None):
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    if _PY311:
        async def create_datagram_endpoint(self, protocol_factory,
                                           local_addr=None, remote_addr=None, *,
                                           family=0, proto=0, flags=0,
                                           reuse_port=None,
                                           allow_broadcast=None, sock=None):
            """Create a datagram endpoint (UDP, or a Unix datagram socket)."""
            return await self._create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family, proto, flags,
                _unset, reuse_port, allow_broadcast, sock)
    else:
        async def create_datagram_endpoint(self, protocol_factory,
                                           local_addr=None, remote_addr=None, *,
                                           family=0, proto=0, flags=0,
                                           reuse_address=_unset, reuse_port=None,
                                           allow_broadcast=None, sock=None):
            """Create a datagram endpoint (UDP, or a Unix datagram socket)."""
            return await self._create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family, proto, flags,
                reuse_address, reuse_port, allow_broadcast, sock)

    async def _create_datagram_endpoint(self, protocol_factory, local_addr,
                                        remote_addr, family, proto, flags,
                                        reuse_address, reuse_port,
                                        allow_broadcast, sock):
        owned = sock is None
        if sock is not None:
            _check_sock_type(sock)
            if (local_addr or remote_addr or family or proto or flags
                    or reuse_port or allow_broadcast):
                given = dict(local_addr=local_addr, remote_addr=remote_addr,
                             family=family, proto=proto, flags=flags)
                if not _PY311:
                    given['reuse_address'] = reuse_address
                given.update(reuse_port=reuse_port, allow_broadcast=allow_broadcast)
                problems = ', '.join(f'{k}={v}' for k, v in given.items() if v)
                raise ValueError(
                    f'socket modifier keyword arguments can not be used '
                    f'when sock is specified. ({problems})')
            sock.setblocking(False)
            r_addr = None
        else:
            pairs = await self._datagram_address_pairs(
                local_addr, remote_addr, family, proto, flags)
            if not _PY311 and reuse_address is not _unset:
                # bpo-37228, as 3.9 / 3.10 answer it.
                if reuse_address:
                    raise ValueError("Passing `reuse_address=True` is no "
                                     "longer supported, as the usage of "
                                     "SO_REUSEPORT in UDP poses a significant "
                                     "security concern.")
                warnings.warn("The *reuse_address* parameter has been "
                              "deprecated as of 3.5.10 and is scheduled "
                              "for removal in 3.11.", DeprecationWarning,
                              stacklevel=3)
            sock, r_addr = await self._open_datagram_socket(
                pairs, local_addr, remote_addr, reuse_port, allow_broadcast)

        try:
            protocol = protocol_factory()
        except BaseException:
            if owned:
                # Nothing else holds the socket we made.
                sock.close()
            raise
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self.get_debug():
            if local_addr:
                _logging_module.logger.info(
                    "Datagram endpoint local_addr=%r remote_addr=%r "
                    "created: (%r, %r)",
                    local_addr, remote_addr, transport, protocol)
            else:
                _logging_module.logger.debug(
                    "Datagram endpoint remote_addr=%r created: (%r, %r)",
                    remote_addr, transport, protocol)
        try:
            await waiter
        except:  # noqa: E722 - cancellation too
            transport.close()
            raise
        return transport, protocol

    async def _datagram_address_pairs(self, local_addr, remote_addr, family,
                                      proto, flags):
        """[((family, proto), (local address, remote address)), ...] to try in turn."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError('unexpected address family')
            return [((family, proto), (None, None))]

        if family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError('string is expected')
            if local_addr and local_addr[0] not in (0, '\x00'):
                # A socket file left by an earlier run is replaced.
                try:
                    if stat.S_ISSOCK(os.stat(local_addr).st_mode):
                        os.remove(local_addr)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    _logging_module.logger.error(
                        'Unable to check or remove stale UNIX socket %r: %r',
                        local_addr, err)
            return [((family, proto), (local_addr, remote_addr))]

        # Both addresses resolved; one candidate per (family, proto) that
        # has every address asked for, in the order resolution found them.
        by_key = {}
        for idx, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError('2-tuple is expected')
            infos = await self._ensure_resolved(
                addr, family=family, type=socket.SOCK_DGRAM, proto=proto,
                flags=flags)
            if not infos:
                raise OSError('getaddrinfo() returned empty list')
            for fam, _, pro, _, address in infos:
                # As asyncio: the last address of a (family, proto) counts.
                by_key.setdefault((fam, pro), [None, None])[idx] = address
        pairs = [(key, pair) for key, pair in by_key.items()
                 if not ((local_addr and pair[0] is None)
                         or (remote_addr and pair[1] is None))]
        if not pairs:
            raise ValueError('can not get address information')
        return pairs

    async def _open_datagram_socket(self, pairs, local_addr, remote_addr,
                                    reuse_port, allow_broadcast):
        errors = []
        for (family, proto), (local_address, remote_address) in pairs:
            sock = None
            try:
                sock = socket.socket(family=family, type=socket.SOCK_DGRAM, proto=proto)
                if reuse_port:
                    _set_reuseport(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                r_addr = None
                if remote_addr:
                    if not allow_broadcast:
                        await self.sock_connect(sock, remote_address)
                    r_addr = remote_address
            except OSError as exc:
                if sock is not None:
                    sock.close()
                errors.append(exc)
            except:  # noqa: E722 - cancellation too
                if sock is not None:
                    sock.close()
                raise
            else:
                return sock, r_addr
        raise errors[0]
