"""The ``sock_*`` coroutines: non-blocking socket calls that wait on the loop.

Each tries the call at once and, only if the socket is not ready, watches the
fd and retries when the poll reports it ready (asyncio's selector_events
contract, including which errors reach the caller).
"""

import errno
import functools
import io
import os
import socket
import sys

from asyncio import constants, exceptions

from ._ferroloop import sock_abandon, sock_recv_start, sock_sendall_start
# os.sendfile natively: see io/fs_ops.rs.
from ._ferroloop import sendfile as _sendfile

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None

_RETRY = (BlockingIOError, InterruptedError)
# asyncio 3.13+ caps each os.sendfile at this (a larger count is no error);
# before, a count past ssize_t is os.sendfile's OverflowError.
_SENDFILE_MAX = sys.maxsize // 2 + 1 if sys.version_info >= (3, 13) else sys.maxsize * 2
# Exactly this class gets the native fast path; a subclass may override
# recv/send, so it goes through its own methods.
_SOCKET = socket.socket


class _Method:
    """Calls ``sock.<name>`` looked up afresh each time, as asyncio's retries do
    (code may replace a socket's method between attempts)."""

    __slots__ = ('sock', 'name')

    def __init__(self, sock, name):
        self.sock, self.name = sock, name

    def __call__(self, *args):
        return getattr(self.sock, self.name)(*args)


def _attempt(fut, op, args):
    # Runs as a reader/writer callback each time the fd is ready.
    if fut.done():
        return
    try:
        result = op(*args)
    except _RETRY:
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
    finally:
        # The exception's traceback holds this frame: without this, the
        # future and its exception would form a cycle.
        fut = None


class _SendAll:
    """Sends the rest of a buffer each time the socket is writable."""

    __slots__ = ('sock', 'view', 'pos')

    def __init__(self, sock, view, pos):
        self.sock, self.view, self.pos = sock, view, pos

    def __call__(self):
        self.pos += self.sock.send(self.view[self.pos:])
        if self.pos < len(self.view):
            raise BlockingIOError
        return None


class _Connect:
    """Reports the outcome of a non-blocking connect once the fd is writable."""

    __slots__ = ('sock', 'address')

    def __init__(self, sock, address):
        self.sock, self.address = sock, address

    def __call__(self):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, f'Connect call failed {self.address}')


class SockMixin:

    def _check_sock(self, sock):
        if ssl is not None and isinstance(sock, ssl.SSLSocket):
            raise TypeError("Socket cannot be of type SSLSocket")
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _sock_wait(self, fd, writing, op, args=()):
        """A future resolved by ``op(*args)`` once it stops raising BlockingIOError."""
        self._ensure_fd_no_transport(fd)
        fut = self.create_future()
        add = self._add_writer if writing else self._add_reader
        handle = add(fd, _attempt, fut, op, args)
        remove = self._remove_writer if writing else self._remove_reader
        fut.add_done_callback(functools.partial(self._sock_done, fd, remove, handle))
        return fut

    def _sock_done(self, fd, remove, handle, fut):
        # Another watcher may have replaced ours meanwhile; leave that one be.
        if not handle.cancelled():
            remove(fd)

    async def _sock_native_wait(self, fd, fut, writing):
        try:
            return await fut
        except BaseException:
            sock_abandon(self, fd, fut, writing)
            raise

    async def sock_recv(self, sock, n):
        self._check_sock(sock)
        if sock.__class__ is _SOCKET:
            fd = sock.fileno()
            if self._transports:
                self._ensure_fd_no_transport(fd)
            result = sock_recv_start(self, fd, n)
            if result.__class__ is bytes:
                return result
            if result is not None:
                return await self._sock_native_wait(fd, result, False)
        try:
            return sock.recv(n)
        except _RETRY:
            pass
        return await self._sock_wait(sock.fileno(), False, _Method(sock, 'recv'), (n,))

    async def sock_recv_into(self, sock, buf):
        self._check_sock(sock)
        try:
            return sock.recv_into(buf)
        except _RETRY:
            pass
        return await self._sock_wait(sock.fileno(), False, _Method(sock, 'recv_into'), (buf,))

    async def sock_recvfrom(self, sock, bufsize):
        self._check_sock(sock)
        try:
            return sock.recvfrom(bufsize)
        except _RETRY:
            pass
        return await self._sock_wait(sock.fileno(), False, _Method(sock, 'recvfrom'), (bufsize,))

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        self._check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except _RETRY:
            pass
        return await self._sock_wait(sock.fileno(), False, _Method(sock, 'recvfrom_into'), (buf, nbytes))

    async def sock_sendall(self, sock, data):
        self._check_sock(sock)
        if sock.__class__ is _SOCKET:
            fd = sock.fileno()
            if self._transports:
                self._ensure_fd_no_transport(fd)
            fut = sock_sendall_start(self, fd, data)
            if fut is not None:
                await self._sock_native_wait(fd, fut, True)
            return
        try:
            n = sock.send(data)
        except _RETRY:
            n = 0
        if n == len(data):
            return
        sender = _SendAll(sock, memoryview(data), n)
        return await self._sock_wait(sock.fileno(), True, sender)

    async def sock_sendto(self, sock, data, address):
        self._check_sock(sock)
        try:
            return sock.sendto(data, address)
        except _RETRY:
            pass
        return await self._sock_wait(sock.fileno(), True, _Method(sock, 'sendto'), (data, 0, address))

    async def sock_connect(self, sock, address):
        self._check_sock(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto)
            address = resolved[0][4]
        try:
            sock.connect(address)
        except _RETRY:
            return await self._sock_wait(sock.fileno(), True, _Connect(sock, address))

    async def sock_accept(self, sock):
        self._check_sock(sock)
        fd = sock.fileno()  # first, as asyncio does: a non-socket fails here
        try:
            conn, address = sock.accept()
        except _RETRY:
            conn, address = await self._sock_wait(fd, False, _Method(sock, 'accept'))
        conn.setblocking(False)
        return conn, address

    # -- sendfile ------------------------------------------------------------

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        self._check_sock(sock)
        _check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        """Zero-copy ``os.sendfile`` from a regular file, waiting when the socket is full."""
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0
        fd = sock.fileno()
        total = 0
        try:
            while not count or total < count:
                if count:
                    blocksize = count - total
                try:
                    sent = _sendfile(fd, fileno, offset + total, min(blocksize, _SENDFILE_MAX))
                except _RETRY:
                    await self._sock_wait(fd, True, _noop)
                    continue
                except OSError as exc:
                    if total == 0:
                        raise exceptions.SendfileNotAvailableError(
                            "os.sendfile call failed") from None
                    if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                        new_exc = ConnectionError("socket is not connected", errno.ENOTCONN)
                        new_exc.__cause__ = exc
                        raise new_exc
                    raise
                if sent == 0:
                    break
                total += sent
                # asyncio sends each next block from a writer callback, so a
                # closed loop stops it after the first.
                self._check_closed()
            return total
        finally:
            # The file's position ends after what was sent; from 3.14 on
            # asyncio moves it there even when nothing was sent. A file that
            # cannot seek (a pipe os.sendfile refused) stays as it is.
            if total > 0:
                os.lseek(fileno, offset + total, os.SEEK_SET)
            elif _PY314:
                try:
                    os.lseek(fileno, offset, os.SEEK_SET)
                except OSError:
                    pass

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        # From 3.14 on offset 0 too: reading starts at the offset, not where
        # the file was left.
        if offset or (_PY314 and hasattr(file, 'seek')):
            file.seek(offset)
        limit = constants.SENDFILE_FALLBACK_READBUFFER_SIZE
        blocksize = min(count, limit) if count else limit
        buf = bytearray(blocksize)
        total = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break
                await self.sock_sendall(sock, view[:read])
                total += read
            return total
        finally:
            if total > 0 and hasattr(file, 'seek'):
                file.seek(offset + total)


_PY314 = sys.version_info >= (3, 14)


def _noop():
    return None


def _check_sendfile_params(sock, file, offset, count):
    if 'b' not in getattr(file, 'mode', 'b'):
        raise ValueError("file should be opened in binary mode")
    if not sock.type == socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")
