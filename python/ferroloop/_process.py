"""Child processes: ``subprocess_exec`` / ``subprocess_shell`` and
``SubprocessTransport``.

Children are started by ``subprocess.Popen`` itself, so every keyword it
takes (``cwd``, ``env``, ``pass_fds``, ``start_new_session``, ``preexec_fn``,
``user``, ...) works as documented; their standard streams become the native
pipe transports of pipes.py. The transport follows asyncio's contract
(``base_subprocess.BaseSubprocessTransport``): ``connection_made`` once every
pipe is connected, ``pipe_data_received`` / ``pipe_connection_lost`` /
``process_exited`` as they happen (queued until ``connection_made``), and
``connection_lost`` last, once the child has exited and every pipe is closed.
The pipes to the child may grow from the kernel's 64 KiB to 256 KiB the
first time one fills up, so a child that streams data does it in fewer,
larger reads and writes (pipes that never fill keep the default size).

How an exit is noticed (``_ChildWatch``):

- On Linux 5.3+ a pidfd (``os.pidfd_open``) of the child is watched by the
  loop like any readable fd: no SIGCHLD handler, no thread, and nothing that
  could reap another part of the program's children. When it turns readable
  the child is reaped with ``waitpid`` under the ``Popen`` object's own lock,
  so ``Popen.poll()`` / ``wait()`` / ``send_signal()`` called by user code
  never race it: whoever reaps first records ``Popen.returncode`` and the
  other one reads it.
- Where ``pidfd_open`` is missing or refused (older kernels, seccomp
  policies, other Unixes) a daemon thread per child waits for its exit
  without reaping it (``waitid`` with ``WNOWAIT``) and tells the loop with
  ``call_soon_threadsafe``, which reaps it as above -- asyncio's
  ``ThreadedChildWatcher`` strategy, the pid reserved until the exit is
  published.

A child reaped behind our back (``os.waitpid(-1)`` elsewhere) is reported
with returncode 255 and a warning, as asyncio's watchers report it.
"""

import _thread
import asyncio
import collections
import functools
import os
import signal
import subprocess
import sys
import threading
import warnings

from asyncio import protocols, transports
# asyncio's own module loggers, looked up per call (tests replace them).
from asyncio import base_events as _events_log
from asyncio import base_subprocess as _subprocess_log

_PY313 = sys.version_info >= (3, 13)

_pidfd_usable = None


def can_use_pidfd():
    """Whether this process may open pidfds (kernel 5.3+, not forbidden)."""
    global _pidfd_usable
    if _pidfd_usable is None:
        usable = hasattr(os, 'pidfd_open')
        if usable:
            try:
                os.close(os.pidfd_open(os.getpid()))
            except OSError:
                usable = False
        _pidfd_usable = usable
    return _pidfd_usable


def _exitcode(status):
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        # A status we cannot decode: report it as is.
        return status


def _allow_growth(pipe_proto):
    """Lets a pipe to the child grow when it fills (pipes.py's cores)."""
    grow = getattr(getattr(pipe_proto.pipe, '_core', None), '_allow_growth', None)
    if grow is not None:
        grow()


def _format_pipe(fd):
    if fd == subprocess.PIPE:
        return '<pipe>'
    if fd == subprocess.STDOUT:
        return '<stdout>'
    return repr(fd)


class _ChildWatch:
    """Tells ``callback(returncode)``, on the loop, when ``proc`` has exited."""

    _RETRY_DELAY = 0.001

    def __init__(self, loop, proc, callback):
        self._loop = loop
        self._proc = proc
        self._callback = callback
        self._pidfd = None
        self._done = False
        if not can_use_pidfd():
            threading.Thread(target=self._wait_in_thread, daemon=True,
                             name=f'ferroloop-waitpid-{proc.pid}').start()
            return
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            # Reaped already (by Popen's own poll() or someone else).
            loop.call_soon(self._reap)
            return
        loop._add_reader(self._pidfd, self._reap)

    def _close_pidfd(self):
        pidfd = self._pidfd
        if pidfd is not None:
            self._pidfd = None
            if not self._loop.is_closed():
                self._loop._remove_reader(pidfd)
            os.close(pidfd)

    def __del__(self):
        # The loop closed before the child exited: do not leak the fd.
        pidfd = self._pidfd
        if pidfd is not None:
            self._pidfd = None
            os.close(pidfd)

    def _reap(self):
        if self._done:
            return
        self._close_pidfd()
        proc = self._proc
        if proc.returncode is None:
            lock = getattr(proc, '_waitpid_lock', None)
            if lock is None:
                returncode = proc.poll()
            elif not lock.acquire(False):
                # Another thread is inside Popen.wait(): it reaps the child
                # now; look again shortly.
                self._loop.call_later(self._RETRY_DELAY, self._reap)
                return
            else:
                try:
                    if proc.returncode is None:
                        self._waitpid(proc)
                finally:
                    lock.release()
                returncode = proc.returncode
            if returncode is None:
                self._loop.call_later(self._RETRY_DELAY, self._reap)
                return
        self._finish(proc.returncode)

    @staticmethod
    def _waitpid(proc):
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:
            _events_log.logger.warning(
                "child process pid %d exit status already read: "
                " will report returncode 255", proc.pid)
            proc.returncode = 255
        else:
            if pid == proc.pid:
                proc.returncode = _exitcode(status)

    def _finish(self, returncode):
        self._done = True
        callback, self._callback = self._callback, None
        # One loop iteration later, as asyncio's pidfd watcher reports it.
        self._loop.call_soon(callback, returncode)

    def _wait_in_thread(self):
        # Waits for the exit without reaping: the child stays a zombie, its
        # pid reserved, until the loop reaps it in _reap and publishes the
        # exit in one step, so send_signal() never reaches a recycled pid.
        # (Without waitid, Popen.wait() reaps it here.)
        pid = self._proc.pid
        try:
            if hasattr(os, 'waitid'):
                while True:
                    try:
                        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                        break
                    except InterruptedError:
                        continue
                    except ChildProcessError:
                        break  # reaped by someone else: _reap finds out
                done = self._reap
            else:
                done = functools.partial(self._finish, self._proc.wait())
        except BaseException:  # pragma: no cover - interpreter shutdown
            return
        try:
            self._loop.call_soon_threadsafe(done)
        except RuntimeError:
            # The loop closed meanwhile: nobody is waiting any more.
            pass

    def cancel(self):
        self._done = True
        self._callback = None
        self._close_pidfd()


class _PipeProto(protocols.BaseProtocol):
    """The protocol of the child's stdin pipe, reporting to the transport."""

    def __init__(self, proc, fd):
        self.proc = proc
        self.fd = fd
        self.pipe = None
        self.disconnected = False

    def __repr__(self):
        return f'<{self.__class__.__name__} fd={self.fd} pipe={self.pipe!r}>'

    def connection_made(self, transport):
        self.pipe = transport

    def connection_lost(self, exc):
        self.disconnected = True
        self.proc._pipe_connection_lost(self.fd, exc)
        self.proc = None

    def pause_writing(self):
        self.proc._protocol.pause_writing()

    def resume_writing(self):
        self.proc._protocol.resume_writing()


class _ReadPipeProto(_PipeProto, protocols.Protocol):
    """The protocol of the child's stdout / stderr pipe."""

    def data_received(self, data):
        self.proc._pipe_data_received(self.fd, data)


class SubprocessTransport(transports.SubprocessTransport):
    """A child process and its pipes, with asyncio's contract."""

    def __init__(self, loop, protocol, proc, args, stdin, stdout, stderr,
                 waiter=None, extra=None):
        """``proc``: the child, started by ``start_child`` (or the
        exception its ``Popen`` raised)."""
        super().__init__(extra)
        self._closed = False
        self._protocol = protocol
        self._loop = loop
        self._proc = None
        self._pid = None
        self._returncode = None
        self._exit_waiters = []
        # Calls for the protocol made before connection_made().
        self._pending_calls = collections.deque()
        self._pipes = {fd: None for fd, how in ((0, stdin), (1, stdout), (2, stderr))
                       if how == subprocess.PIPE}
        self._finished = False
        # Connecting the pipes failed: the protocol never starts.
        self._connect_failed = False
        self._watch = None
        if isinstance(proc, BaseException):
            self.close()
            raise proc
        self._proc = proc
        self._pid = self._proc.pid
        self._extra['subprocess'] = self._proc
        if loop.get_debug():
            program = args if isinstance(args, (bytes, str)) else args[0]
            _subprocess_log.logger.debug('process %r created: pid %s', program, self._pid)
        self._watch = _ChildWatch(loop, self._proc, self._process_exited)
        loop.create_task(self._connect_pipes(waiter))

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._closed:
            info.append('closed')
        if self._pid is not None:
            info.append(f'pid={self._pid}')
        if self._returncode is not None:
            info.append(f'returncode={self._returncode}')
        elif self._pid is not None:
            info.append('running')
        else:
            info.append('not started')
        stdin = self._pipes.get(0)
        if stdin is not None:
            info.append(f'stdin={stdin.pipe}')
        stdout = self._pipes.get(1)
        stderr = self._pipes.get(2)
        if stdout is not None and stderr is stdout:
            info.append(f'stdout=stderr={stdout.pipe}')
        else:
            if stdout is not None:
                info.append(f'stdout={stdout.pipe}')
            if stderr is not None:
                info.append(f'stderr={stderr.pipe}')
        return '<{}>'.format(' '.join(info))

    def __del__(self, _warn=warnings.warn):
        if not self._closed:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()

    # -- the SubprocessTransport API ---------------------------------------------

    def set_protocol(self, protocol):
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self):
        return self._closed

    def close(self):
        if self._closed:
            return
        self._closed = True
        for proto in self._pipes.values():
            if proto is not None and proto.pipe is not None:
                proto.pipe.close()
        proc = self._proc
        # Kill the child unless it has exited, even if its exit has not been
        # reported yet.
        if proc is not None and self._returncode is None and proc.poll() is None:
            if self._loop.get_debug():
                _subprocess_log.logger.warning('Close running child process: kill %r', self)
            try:
                proc.kill()
            except (ProcessLookupError, PermissionError):
                # Gone already, or a setuid child we may not signal.
                pass
            # _proc stays: the exit is still to be reported.

    def get_pid(self):
        return self._pid

    def get_returncode(self):
        return self._returncode

    def get_pipe_transport(self, fd):
        proto = self._pipes.get(fd)
        return None if proto is None else proto.pipe

    def _check_proc(self):
        if self._proc is None:
            raise ProcessLookupError()

    def send_signal(self, signal):
        self._check_proc()
        # Popen's own send_signal: it skips a child already reaped (whose
        # pid may belong to another process by now).
        self._proc.send_signal(signal)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    # -- wiring the pipes and reporting to the protocol --------------------------

    async def _connect_pipes(self, waiter):
        try:
            proc = self._proc
            loop = self._loop
            # Through the loop's public methods, as asyncio: wrappers see them.
            if proc.stdin is not None:
                _, pipe = await loop.connect_write_pipe(
                    lambda: _PipeProto(self, 0), proc.stdin)
                self._pipes[0] = pipe
                _allow_growth(pipe)
            if proc.stdout is not None:
                _, pipe = await loop.connect_read_pipe(
                    lambda: _ReadPipeProto(self, 1), proc.stdout)
                self._pipes[1] = pipe
                _allow_growth(pipe)
            if proc.stderr is not None:
                _, pipe = await loop.connect_read_pipe(
                    lambda: _ReadPipeProto(self, 2), proc.stderr)
                self._pipes[2] = pipe
                _allow_growth(pipe)
            loop.call_soon(self._protocol.connection_made, self)
            for callback, data in self._pending_calls:
                loop.call_soon(callback, *data)
            self._pending_calls = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._abandon_pipes()
            if waiter is not None and not waiter.cancelled():
                waiter.set_exception(exc)
        else:
            if waiter is not None and not waiter.cancelled():
                waiter.set_result(None)

    def _abandon_pipes(self):
        """A pipe failed to connect: the caller gets the error and kills the
        child, and only its exit is waited for. (asyncio would wait for ever
        for the pipes it never connected.)"""
        self._connect_failed = True
        self._pending_calls = None
        for fd, name in ((0, 'stdin'), (1, 'stdout'), (2, 'stderr')):
            if fd in self._pipes and self._pipes[fd] is None:
                del self._pipes[fd]
                stream = getattr(self._proc, name, None)
                if stream is not None:
                    stream.close()

    def _call(self, cb, *data):
        if self._connect_failed:
            # Nothing reaches a protocol that was never connected; the end
            # still wakes whoever waits for the exit.
            if cb == self._call_connection_lost:
                self._loop.call_soon(self._release_exit_waiters)
            return
        if self._pending_calls is not None:
            self._pending_calls.append((cb, data))
        else:
            self._loop.call_soon(cb, *data)

    def _pipe_connection_lost(self, fd, exc):
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _pipe_data_received(self, fd, data):
        self._call(self._protocol.pipe_data_received, fd, data)

    def _process_exited(self, returncode):
        if self._returncode is not None:
            return
        if self._loop.get_debug():
            _subprocess_log.logger.info('%r exited with return code %r', self, returncode)
        self._returncode = returncode
        if self._proc.returncode is None:
            self._proc.returncode = returncode
        self._call(self._protocol.process_exited)
        self._try_finish()
        # wait() returns as soon as the child has exited, even while a
        # grandchild keeps its pipes open (asyncio does so from 3.14 on).
        self._wake_exit_waiters()

    async def _wait(self):
        """The child's returncode, once it has exited (a coroutine)."""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        self._exit_waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._exit_waiters is not None and waiter in self._exit_waiters:
                self._exit_waiters.remove(waiter)

    def _wake_exit_waiters(self):
        waiters, self._exit_waiters = self._exit_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(self._returncode)

    def _try_finish(self):
        if self._finished or self._returncode is None:
            return
        if all(p is not None and p.disconnected for p in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._release_exit_waiters()

    def _release_exit_waiters(self):
        self._wake_exit_waiters()
        self._watch = None
        self._loop = None
        self._proc = None
        self._protocol = None


async def start_child(loop, args, kwargs):
    """Starts the child with ``subprocess.Popen`` in a thread of its own.
    Returns (the ``Popen`` object or the exception it raised, the
    CancelledError that arrived meanwhile or None).

    Popen blocks until the child has exec'd (it reads the exec-error pipe);
    asyncio does that on the loop's thread, where blocking-call detectors
    (blockbuster) flag it unless the caller is asyncio's own file. Here the
    loop keeps running meanwhile, and the wait happens where it blocks no
    loop. A cancellation that arrives meanwhile is raised once the child
    exists, so that the caller can stop it, as asyncio's would be.

    The thread is a bare ``_thread`` one, which ``threading`` never lists:
    programs count ``threading.enumerate()`` / ``active_count()`` around a
    spawn, and a ``threading.Thread`` stays listed until it is gone, which
    nothing tells the loop (polling for that cost a tenth of a spawn). A
    Rust thread costs the same, but before 3.14 the interpreter ends a
    thread at exit by unwinding it (``pthread_exit``), which must not cross
    Rust frames.
    """
    if loop.is_closed():
        # No loop would hear from the thread: start the child here, as
        # asyncio does, so the caller meets Popen's errors, then the closed
        # loop, in asyncio's order.
        return _popen(args, kwargs), None
    started = loop.create_future()

    def spawn():
        result = _popen(args, kwargs)
        try:
            loop.call_soon_threadsafe(_deliver, started, result)
        except RuntimeError:
            # The loop closed meanwhile: nobody will own the child.
            if not isinstance(result, BaseException):
                result.kill()
                result.wait()

    _thread.start_new_thread(spawn, ())
    cancelled = None
    while True:
        try:
            return await asyncio.shield(started), cancelled
        except asyncio.CancelledError as exc:
            if started.cancelled():
                raise
            cancelled = exc


def _popen(args, kwargs):
    try:
        # Looked up at call time: code (and tests) may replace it.
        return subprocess.Popen(args, **kwargs)
    except BaseException as exc:  # noqa: B036 - handed to the caller
        return exc


def _deliver(future, result):
    if not future.cancelled():
        future.set_result(result)
    elif not isinstance(result, BaseException):
        result.kill()
        result.wait()


class SubprocessMixin:

    async def _make_subprocess_transport(self, protocol, args, shell, stdin,
                                         stdout, stderr, bufsize, extra=None,
                                         **kwargs):
        waiter = self.create_future()
        proc, cancelled = await start_child(self, args, dict(
            shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs))
        transport = SubprocessTransport(self, protocol, proc, args, stdin, stdout,
                                        stderr, waiter=waiter, extra=extra)
        try:
            if cancelled is not None:
                raise cancelled
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _log_subprocess(self, msg, stdin, stdout, stderr):
        info = [msg]
        if stdin is not None:
            info.append(f'stdin={_format_pipe(stdin)}')
        if stdout is not None and stderr == subprocess.STDOUT:
            info.append(f'stdout=stderr={_format_pipe(stdout)}')
        else:
            if stdout is not None:
                info.append(f'stdout={_format_pipe(stdout)}')
            if stderr is not None:
                info.append(f'stderr={_format_pipe(stderr)}')
        _events_log.logger.debug(' '.join(info))

    @staticmethod
    def _check_subprocess_args(universal_newlines, bufsize, text, encoding, errors,
                               shell=None, want_shell=None):
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if want_shell is not None and bool(shell) != want_shell:
            raise ValueError("shell must be True" if want_shell else "shell must be False")
        if bufsize != 0:
            raise ValueError("bufsize must be 0")
        if text:
            raise ValueError("text must be False")
        if encoding is not None:
            raise ValueError("encoding must be None")
        if errors is not None:
            raise ValueError("errors must be None")

    async def subprocess_shell(self, protocol_factory, cmd, *,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=False,
                               shell=True, bufsize=0, encoding=None, errors=None,
                               text=None, **kwargs):
        """Runs ``cmd`` through the shell; returns (transport, protocol)."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        self._check_subprocess_args(universal_newlines, bufsize, text, encoding,
                                    errors, shell, True)
        protocol = protocol_factory()
        debug_log = None
        if self.get_debug():
            # The command may hold secrets and be long: not logged in full.
            debug_log = 'run shell command %r' % cmd
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs)
        if self.get_debug() and debug_log is not None:
            _events_log.logger.info('%s: %r', debug_log, transport)
        return transport, protocol

    async def subprocess_exec(self, protocol_factory, program, *args,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=False,
                              shell=False, bufsize=0, encoding=None, errors=None,
                              text=None, **kwargs):
        """Runs ``program`` with ``args``; returns (transport, protocol)."""
        self._check_subprocess_args(universal_newlines, bufsize, text, encoding,
                                    errors, shell, False)
        popen_args = (program,) + args
        protocol = protocol_factory()
        debug_log = None
        if self.get_debug():
            debug_log = f'execute program {program!r}'
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, popen_args, False, stdin, stdout, stderr, bufsize, **kwargs)
        if self.get_debug() and debug_log is not None:
            _events_log.logger.info('%s: %r', debug_log, transport)
        return transport, protocol
