"""Address resolution: ``getaddrinfo`` / ``getnameinfo``.

A numeric host (``'127.0.0.1'``, ``'::1'``) needs no resolver, so it is
answered on the spot, with no thread hop. The usual requests (a literal
address, a numeric port, the families, socket types, protocols and flags
``create_connection`` / ``create_server`` and client libraries pass) are
built natively (``io/literal_addrinfo.rs``) without libc's ``getaddrinfo``,
which costs 13-27 us even for a literal; other numeric ones are given to
``socket.getaddrinfo`` on the spot. Either way the result is exactly
``socket.getaddrinfo``'s (tests/test_resolver.py compares them over a
matrix of inputs). Anything that may touch DNS or NSS goes to the default
executor, as asyncio does.
"""

import socket


# asyncio's module: its logger is looked up per call (code and tests may
# replace it), and its `_ipaddr_info` decides what needs no lookup.
from asyncio import base_events as _base_events

from ._ferroloop import literal_addrinfo as _literal_addrinfo

_NUMERIC_PORT_TYPES = (int, type(None))


def _is_numeric_host(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode('ascii')
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str) or '%' in host:
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _is_numeric_port(port):
    if isinstance(port, _NUMERIC_PORT_TYPES):
        return True
    if isinstance(port, (str, bytes)):
        return port.isdigit()
    return False


def is_numeric(host, port):
    """True when ``getaddrinfo(host, port)`` cannot block on a lookup."""
    return _is_numeric_port(port) and _is_numeric_host(host)


class ResolverMixin:

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        # asyncio's run_in_executor looks at the loop first. (Native calls
        # only, up to the answer: this is the whole cost of a literal.)
        if self.is_closed():
            raise RuntimeError('Event loop is closed')
        debug = self.get_debug()
        if not debug:
            infos = _literal_addrinfo(host, port, family, type, proto, flags)
            if infos is not None:
                return infos
            if is_numeric(host, port):
                return socket.getaddrinfo(host, port, family, type, proto, flags)
        func = self._getaddrinfo_debug if debug else socket.getaddrinfo
        return await self.run_in_executor(None, func, host, port, family, type, proto, flags)

    def _getaddrinfo_debug(self, host, port, family, type, proto, flags):
        msg = [f"{host}:{port!r}"]
        if family:
            msg.append(f'family={family!r}')
        if type:
            msg.append(f'type={type!r}')
        if proto:
            msg.append(f'proto={proto!r}')
        if flags:
            msg.append(f'flags={flags!r}')
        msg = ', '.join(msg)
        _base_events.logger.debug('Get address info %s', msg)
        t0 = self.time()
        addrinfo = socket.getaddrinfo(host, port, family, type, proto, flags)
        dt = self.time() - t0
        msg = f'Getting address info {msg} took {dt * 1e3:.3f}ms: {addrinfo!r}'
        if dt >= self.slow_callback_duration:
            _base_events.logger.info(msg)
        else:
            _base_events.logger.debug(msg)
        return addrinfo

    async def getnameinfo(self, sockaddr, flags=0):
        self._check_closed()
        numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        if flags.__class__ is int and flags & numeric == numeric:
            return socket.getnameinfo(sockaddr, flags)
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(self, address, *, family=0, type=socket.SOCK_STREAM,
                               proto=0, flags=0):
        host, port = address[:2]
        if len(address) == 2:
            # A literal host and a valid port, natively: the answer asyncio's
            # _ipaddr_info or its getaddrinfo would give.
            infos = _literal_addrinfo(host, port, family, type, proto, flags)
            if infos is not None:
                return infos
        # asyncio's own test for an address that needs no lookup: the same
        # addresses skip the resolver, with the same errors for bad ones.
        info = _base_events._ipaddr_info(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        return await self.getaddrinfo(host, port, family=family, type=type,
                                      proto=proto, flags=flags)
