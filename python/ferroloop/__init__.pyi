"""Types of ferroloop's public API.

``Loop`` is spelled out method by method: asyncio's ``AbstractEventLoop``
declares every method abstract, so a class that only inherited them would be
one a type checker refuses to instantiate. The signatures are asyncio's, with
the newest Python's parameters on every version, as ferroloop accepts them
there; handles, futures and tasks are asyncio's types.
"""

import asyncio
import ssl
import sys
from asyncio.trsock import TransportSocket
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from concurrent.futures import Executor
from contextvars import Context
from socket import AddressFamily, SocketKind, _Address, _RetAddress, socket
from typing import IO, Any, Literal, TypeAlias, TypeVar, TypeVarTuple, Unpack, type_check_only

from _typeshed import FileDescriptorLike, ReadableBuffer, StrPath, WriteableBuffer

from ._ferroloop import Handle as Handle, TimerHandle as TimerHandle
from ._metrics import LagStats as LagStats, LoopMetrics as LoopMetrics, SlowCallback as SlowCallback

__all__ = ('Loop', 'Handle', 'TimerHandle', 'EventLoopPolicy', 'install',
           'new_event_loop', 'run', 'LoopMetrics', 'LagStats', 'SlowCallback')

__version__: str

_T = TypeVar('_T')
_Ts = TypeVarTuple('_Ts')
_ProtocolT = TypeVar('_ProtocolT', bound=asyncio.BaseProtocol)

if sys.version_info >= (3, 12):
    _CoroutineLike: TypeAlias = Coroutine[Any, Any, _T]
    _AwaitableLike: TypeAlias = Awaitable[_T]
else:
    _CoroutineLike: TypeAlias = Generator[Any, None, _T] | Coroutine[Any, Any, _T]
    _AwaitableLike: TypeAlias = Generator[Any, None, _T] | Awaitable[_T]

_TaskFactory: TypeAlias = Callable[[asyncio.AbstractEventLoop, _CoroutineLike[Any]], asyncio.Future[Any]]
_ExceptionHandler: TypeAlias = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]
_SSL: TypeAlias = bool | ssl.SSLContext | None
_AddrInfo: TypeAlias = (
    tuple[Literal[AddressFamily.AF_INET], SocketKind, int, str, tuple[str, int]]
    | tuple[Literal[AddressFamily.AF_INET6], SocketKind, int, str,
            tuple[str, int, int, int] | tuple[int, bytes]])
_Stdio: TypeAlias = int | IO[Any] | None

@type_check_only
class _Server(asyncio.AbstractServer):
    """What ``create_server`` / ``create_unix_server`` return (an ``asyncio.AbstractServer``)."""

    @property
    def sockets(self) -> tuple[TransportSocket, ...]: ...
    def close(self) -> None: ...
    def close_clients(self) -> None: ...
    def abort_clients(self) -> None: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def is_serving(self) -> bool: ...
    async def start_serving(self) -> None: ...
    async def serve_forever(self) -> None: ...
    async def wait_closed(self) -> None: ...

class Loop(asyncio.AbstractEventLoop):
    """asyncio's event loop, with its core in Rust."""

    slow_callback_duration: float
    def __init__(self) -> None: ...

    # Running and stopping.
    def run_forever(self) -> None: ...
    def run_until_complete(self, future: _AwaitableLike[_T]) -> _T: ...
    def stop(self) -> None: ...
    def is_running(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def close(self) -> None: ...
    async def shutdown_asyncgens(self) -> None: ...
    async def shutdown_default_executor(self, timeout: float | None = None) -> None: ...

    # Callbacks, futures and tasks.
    def call_soon(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts],
                  context: Context | None = None) -> asyncio.Handle: ...
    def call_soon_threadsafe(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts],
                             context: Context | None = None) -> asyncio.Handle: ...
    def call_later(self, delay: float, callback: Callable[[Unpack[_Ts]], object],
                   *args: Unpack[_Ts], context: Context | None = None) -> asyncio.TimerHandle: ...
    def call_at(self, when: float, callback: Callable[[Unpack[_Ts]], object],
                *args: Unpack[_Ts], context: Context | None = None) -> asyncio.TimerHandle: ...
    def time(self) -> float: ...
    def create_future(self) -> asyncio.Future[Any]: ...
    # No eager_start (3.13.3+): ferroloop's tasks start on the loop.
    def create_task(  # type: ignore[override, unused-ignore]
        self, coro: _CoroutineLike[_T], *, name: str | None = None, context: Context | None = None,
    ) -> asyncio.Task[_T]: ...
    def set_task_factory(self, factory: _TaskFactory | None) -> None: ...
    def get_task_factory(self) -> _TaskFactory | None: ...

    # Threads.
    def run_in_executor(self, executor: Executor | None, func: Callable[[Unpack[_Ts]], _T],
                        *args: Unpack[_Ts]) -> asyncio.Future[_T]: ...
    def set_default_executor(self, executor: Executor) -> None: ...

    # Name resolution.
    async def getaddrinfo(self, host: bytes | str | None, port: bytes | str | int | None, *,
                          family: int = 0, type: int = 0, proto: int = 0, flags: int = 0,
                          ) -> list[_AddrInfo]: ...
    async def getnameinfo(self, sockaddr: tuple[str, int] | tuple[str, int, int, int],
                          flags: int = 0) -> tuple[str, str]: ...

    # Streams.
    async def create_connection(
        self, protocol_factory: Callable[[], _ProtocolT], host: str | None = None,
        port: int | None = None, *, ssl: _SSL = None, family: int = 0, proto: int = 0,
        flags: int = 0, sock: socket | None = None, local_addr: tuple[str, int] | None = None,
        server_hostname: str | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, happy_eyeballs_delay: float | None = None,
        interleave: int | None = None, all_errors: bool = False,
    ) -> tuple[asyncio.Transport, _ProtocolT]: ...
    async def create_server(  # type: ignore[override]  # an AbstractServer, not asyncio.Server
        self, protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None = None, port: int | None = None, *,
        family: int = ..., flags: int = ..., sock: socket | None = None,
        backlog: int = 100, ssl: _SSL = None, reuse_address: bool | None = None,
        reuse_port: bool | None = None, keep_alive: bool | None = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> _Server: ...
    async def create_unix_connection(
        self, protocol_factory: Callable[[], _ProtocolT], path: str | None = None, *,
        ssl: _SSL = None, sock: socket | None = None, server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, _ProtocolT]: ...
    async def create_unix_server(  # type: ignore[override]  # an AbstractServer, not asyncio.Server
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], path: StrPath | None = None,
        *, sock: socket | None = None, backlog: int = 100, ssl: _SSL = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True, cleanup_socket: bool = True,
    ) -> _Server: ...
    async def connect_accepted_socket(
        self, protocol_factory: Callable[[], _ProtocolT], sock: socket, *, ssl: _SSL = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, _ProtocolT]: ...
    async def sendfile(self, transport: asyncio.WriteTransport, file: IO[bytes], offset: int = 0,
                       count: int | None = None, *, fallback: bool = True) -> int: ...
    async def start_tls(
        self, transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext, *, server_side: bool = False,
        server_hostname: str | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport | None: ...

    # Datagrams, pipes, subprocesses.
    async def create_datagram_endpoint(  # type: ignore[override]  # reuse_address is gone since 3.11
        self, protocol_factory: Callable[[], _ProtocolT],
        local_addr: tuple[str, int] | str | None = None,
        remote_addr: tuple[str, int] | str | None = None, *, family: int = 0, proto: int = 0,
        flags: int = 0, reuse_port: bool | None = None, allow_broadcast: bool | None = None,
        sock: socket | None = None,
    ) -> tuple[asyncio.DatagramTransport, _ProtocolT]: ...
    async def connect_read_pipe(self, protocol_factory: Callable[[], _ProtocolT],
                                pipe: Any) -> tuple[asyncio.ReadTransport, _ProtocolT]: ...
    async def connect_write_pipe(self, protocol_factory: Callable[[], _ProtocolT],
                                 pipe: Any) -> tuple[asyncio.WriteTransport, _ProtocolT]: ...
    async def subprocess_shell(
        self, protocol_factory: Callable[[], _ProtocolT], cmd: bytes | str, *,
        stdin: _Stdio = -1, stdout: _Stdio = -1, stderr: _Stdio = -1,
        universal_newlines: Literal[False] = False, shell: Literal[True] = True,
        bufsize: Literal[0] = 0, encoding: None = None, errors: None = None,
        text: Literal[False] | None = None, **kwargs: Any,
    ) -> tuple[asyncio.SubprocessTransport, _ProtocolT]: ...
    async def subprocess_exec(
        self, protocol_factory: Callable[[], _ProtocolT], program: Any, *args: Any,
        stdin: _Stdio = -1, stdout: _Stdio = -1, stderr: _Stdio = -1,
        universal_newlines: Literal[False] = False, shell: Literal[False] = False,
        bufsize: Literal[0] = 0, encoding: None = None, errors: None = None,
        text: Literal[False] | None = None, **kwargs: Any,
    ) -> tuple[asyncio.SubprocessTransport, _ProtocolT]: ...

    # File descriptors and sockets.
    def add_reader(self, fd: FileDescriptorLike, callback: Callable[[Unpack[_Ts]], object],
                   *args: Unpack[_Ts]) -> None: ...
    def remove_reader(self, fd: FileDescriptorLike) -> bool: ...
    def add_writer(self, fd: FileDescriptorLike, callback: Callable[[Unpack[_Ts]], object],
                   *args: Unpack[_Ts]) -> None: ...
    def remove_writer(self, fd: FileDescriptorLike) -> bool: ...
    async def sock_recv(self, sock: socket, n: int) -> bytes: ...
    async def sock_recv_into(self, sock: socket, buf: WriteableBuffer) -> int: ...
    async def sock_recvfrom(self, sock: socket, bufsize: int) -> tuple[bytes, _RetAddress]: ...
    async def sock_recvfrom_into(self, sock: socket, buf: WriteableBuffer,
                                 nbytes: int = 0) -> tuple[int, _RetAddress]: ...
    async def sock_sendall(self, sock: socket, data: ReadableBuffer) -> None: ...
    async def sock_sendto(self, sock: socket, data: ReadableBuffer, address: _Address) -> int: ...
    async def sock_connect(self, sock: socket, address: _Address) -> None: ...
    async def sock_accept(self, sock: socket) -> tuple[socket, _RetAddress]: ...
    async def sock_sendfile(self, sock: socket, file: IO[bytes], offset: int = 0,
                            count: int | None = None, *, fallback: bool | None = True) -> int: ...

    # Signals.
    def add_signal_handler(self, sig: int, callback: Callable[[Unpack[_Ts]], object],
                           *args: Unpack[_Ts]) -> None: ...
    def remove_signal_handler(self, sig: int) -> bool: ...

    # Errors and debug mode.
    def set_exception_handler(self, handler: _ExceptionHandler | None) -> None: ...
    def get_exception_handler(self) -> _ExceptionHandler | None: ...
    def default_exception_handler(self, context: dict[str, Any]) -> None: ...
    def call_exception_handler(self, context: dict[str, Any]) -> None: ...
    def get_debug(self) -> bool: ...
    def set_debug(self, enabled: bool) -> None: ...

    # Metrics (ferroloop's own; off by default).
    def enable_metrics(self, *, slow_callback_duration: float | None = 0.1,
                       on_slow_callback: Callable[[SlowCallback], object] | None = None) -> None: ...
    def disable_metrics(self) -> None: ...
    def metrics(self) -> LoopMetrics: ...

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, handing out ferroloop loops."""

def new_event_loop() -> Loop:
    """A new, unstarted ferroloop ``Loop``."""

def install() -> None:
    """Makes ferroloop the loop that ``asyncio.new_event_loop()`` / ``asyncio.run()`` give."""

def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """``asyncio.run(main)`` on a new ferroloop loop."""
