"""Child processes: ``subprocess_exec`` / ``subprocess_shell``, the subprocess
transport, and asyncio's ``create_subprocess_*`` / ``Process`` on top.

Most tests take the ``loop`` fixture and run once on ferroloop and once on
asyncio's own ``SelectorEventLoop``; the ones about how ferroloop notices an
exit (pidfd, no SIGCHLD handler, no thread, the thread fallback) run on
ferroloop only. Every child is bounded in time and checked to be reaped.
"""

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest
from support import TIMEOUT, asyncio_since, loops, run

import ferroloop
from ferroloop import _process as ferro_process

PY = sys.executable
BLOCKED = [PY, '-c', 'import time; time.sleep(3600)']
CAT = [PY, '-c', 'import sys, shutil; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)']
ferroloop_only = loops(asyncio_marks=pytest.mark.skip(reason='about ferroloop itself'))


def open_fds():
    return set(os.listdir('/proc/self/fd'))


def children():
    """Pids of our child processes, zombies included, from /proc."""
    me = os.getpid()
    kids = set()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces: fields after the last ')'.
        if int(stat.rsplit(')', 1)[1].split()[1]) == me:
            kids.add(int(entry))
    return kids


def reaped(pid):
    """True once ``pid`` is no child of ours any more (not even a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


class Recorder(asyncio.SubprocessProtocol):
    def __init__(self, loop):
        self.events = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.transport = None
        self.returncode_at_exit = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')

    def pipe_data_received(self, fd, data):
        if self.events[-1] != ('data', fd):
            self.events.append(('data', fd))
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(('pipe_lost', fd, exc))

    def process_exited(self):
        self.returncode_at_exit = self.transport.get_returncode()
        self.events.append('exited')

    def connection_lost(self, exc):
        self.events.append('lost')
        self.lost.set_result(exc)


# -- the transport and its protocol ------------------------------------------------------

def test_protocol_callbacks_in_asyncio_order(loop):
    code = 'import sys; sys.stdout.write("out"); sys.stderr.write("err"); sys.exit(3)'

    async def main():
        t, p = await loop.subprocess_exec(lambda: Recorder(loop), PY, '-c', code)
        assert p.events == ['made']
        assert isinstance(t, asyncio.SubprocessTransport)
        proc = t.get_extra_info('subprocess')
        assert isinstance(proc, subprocess.Popen) and t.get_pid() == proc.pid
        stdin = t.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(t.get_pipe_transport(1), asyncio.ReadTransport)
        assert t.get_pipe_transport(3) is None
        stdin.close()
        assert await p.lost is None
        assert p.events[0] == 'made' and p.events[-1] == 'lost'
        middle = p.events[1:-1]
        assert set(middle) >= {('data', 1), ('data', 2), 'exited', ('pipe_lost', 0, None),
                               ('pipe_lost', 1, None), ('pipe_lost', 2, None)}
        # Each pipe's data comes before that pipe's end.
        for fd in (1, 2):
            assert middle.index(('data', fd)) < middle.index(('pipe_lost', fd, None))
        assert bytes(p.data[1]) == b'out' and bytes(p.data[2]) == b'err'
        assert p.returncode_at_exit == 3 and t.get_returncode() == 3
        assert reaped(t.get_pid())
        t.close()
    run(loop, main())


def test_no_pipes_and_close_after_the_child_finished(loop):
    async def main():
        t, p = await loop.subprocess_shell(lambda: Recorder(loop), 'exit 7',
                                           stdin=None, stdout=None, stderr=None)
        assert [t.get_pipe_transport(fd) for fd in (0, 1, 2)] == [None, None, None]
        assert await p.lost is None
        assert p.events == ['made', 'exited', 'lost']
        assert t.get_returncode() == 7
        assert t.close() is None
        assert t.is_closing()
    run(loop, main())


def test_close_kills_a_running_child(loop):
    async def main():
        t, p = await loop.subprocess_exec(lambda: Recorder(loop), *BLOCKED)
        assert t.get_returncode() is None
        t.close()
        assert t.is_closing()
        assert await p.lost is None
        assert t.get_returncode() == -signal.SIGKILL
        assert reaped(t.get_pid())
    run(loop, main())


@pytest.mark.parametrize('how, sig', [('terminate', signal.SIGTERM), ('kill', signal.SIGKILL),
                                      ('send_signal', signal.SIGHUP)])
def test_signals_to_the_child(loop, how, sig):
    code = 'import time; print("ready", flush=True); time.sleep(3600)'

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, '-c', code, stdout=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        assert await proc.stdout.readline() == b'ready\n'
        if how == 'send_signal':
            proc.send_signal(sig)
        else:
            getattr(proc, how)()
        assert await proc.wait() == -sig
        assert proc.returncode == -sig
        assert reaped(proc.pid)
    run(loop, main())


def test_methods_after_connection_lost_raise_process_lookup_error(loop):
    async def main():
        t, p = await loop.subprocess_shell(lambda: Recorder(loop), 'true')
        await p.lost
        for call in (t.kill, t.terminate, lambda: t.send_signal(signal.SIGTERM)):
            with pytest.raises(ProcessLookupError):
                call()
        t.close()
    run(loop, main())


# -- asyncio.subprocess on top -------------------------------------------------------------

def test_ten_mebibytes_through_cat_with_communicate(loop):
    blob = os.urandom(10 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            'cat', stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, err = await proc.communicate(blob)
        assert out == blob and err is None
        assert proc.returncode == 0
        assert reaped(proc.pid)
    run(loop, main(), timeout=60)


def test_streams_both_ways_with_drain(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        chunk = b'0123456789abcdef' * 4096
        received = bytearray()

        async def reader():
            while True:
                data = await proc.stdout.read(1 << 16)
                if not data:
                    return
                received.extend(data)

        task = asyncio.ensure_future(reader())
        for _ in range(64):
            proc.stdin.write(chunk)
            await proc.stdin.drain()
        proc.stdin.close()
        await task
        assert received == chunk * 64
        assert await proc.wait() == 0
    run(loop, main(), timeout=60)


def test_shell_and_stderr_to_stdout(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            'echo out; echo err >&2; exit 4', stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, err = await proc.communicate()
        assert sorted(out.split()) == [b'err', b'out'] and err is None
        assert proc.returncode == 4
    run(loop, main())


def test_child_that_exits_before_reading_stdin(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, '-c', 'pass', stdin=subprocess.PIPE)
        # communicate() ignores the broken pipe.
        await proc.communicate(b'x' * (4 << 20))
        assert proc.returncode == 0

        rfd, wfd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                PY, '-c', f'import os; os.read({rfd}, 1)', stdin=subprocess.PIPE,
                pass_fds=(rfd,))
            proc.stdin.write(b'x' * (4 << 20))
            os.write(wfd, b'go')
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                await proc.stdin.drain()
            assert await proc.wait() == 0
        finally:
            os.close(rfd)
            os.close(wfd)
    loop.set_exception_handler(lambda loop, context: None)
    run(loop, main(), timeout=30)


def test_child_killed_on_timeout_is_reaped(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(*BLOCKED)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.2)
        assert proc.returncode is None
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
        assert reaped(proc.pid)
    run(loop, main())


def test_cancelling_process_creation_kills_and_reaps_the_child(loop):
    async def main():
        gc.collect()
        before = open_fds()
        kids = children()
        task = asyncio.ensure_future(asyncio.create_subprocess_exec(*BLOCKED))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The child was killed and waited for before the cancellation ended.
        for _ in range(100):
            if not open_fds() - before:
                break
            await asyncio.sleep(0.01)
        assert open_fds() - before == set()
        assert children() == kids
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        run(loop, main())


def new_threads(before):
    """Threads threading lists now and not in ``before`` (threads of earlier
    tests may end meanwhile). asyncio 3.11's default child watcher waits for
    each child's exit in a thread of its own (asyncio-waitpid-N): that is
    watching, not spawning."""
    return [t for t in threading.enumerate() if t not in before and 'waitpid-' not in t.name]


def test_spawning_leaves_no_new_thread(loop):
    async def main():
        before = threading.enumerate()
        procs = [await asyncio.create_subprocess_exec(*BLOCKED)]
        added = [new_threads(before)]
        procs += await asyncio.gather(*(asyncio.create_subprocess_exec(*BLOCKED)
                                        for _ in range(4)))
        added.append(new_threads(before))
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec('/nonexistent/program')
        added.append(new_threads(before))
        for proc in procs:
            proc.kill()
        codes = [await proc.wait() for proc in procs]
        added.append(new_threads(before))
        return added, codes

    added, codes = run(loop, main())
    assert added == [[]] * 4
    assert codes == [-signal.SIGKILL] * 5


def held_popen(monkeypatch):
    """Replaces subprocess.Popen (with a function, as code may) by one that
    starts the child only once ``release`` is set; ``made`` gets each child."""
    real = subprocess.Popen
    entered, release, made = threading.Event(), threading.Event(), []

    def popen(*args, **kwargs):
        entered.set()
        release.wait(TIMEOUT)
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(subprocess, 'Popen', popen)
    return entered, release, made


async def until(event):
    for _ in range(TIMEOUT * 100):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError('never set')


@ferroloop_only
def test_while_popen_blocks_the_loop_runs_threading_lists_no_thread_and_a_cancel_waits(
        loop, monkeypatch):
    entered, release, made = held_popen(monkeypatch)

    async def main():
        kids = children()
        before = threading.enumerate()
        task = asyncio.ensure_future(asyncio.create_subprocess_exec(*BLOCKED))
        await until(entered)
        # Popen is blocked in a thread that threading never lists; the loop
        # goes on.
        assert new_threads(before) == []
        assert await asyncio.wait_for(asyncio.sleep(0.05, 'ran'), 1) == 'ran'
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()      # not before the child exists
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        [proc] = made
        assert proc.returncode == -signal.SIGKILL and reaped(proc.pid)
        assert children() == kids
    run(loop, main())


@ferroloop_only
def test_a_child_whose_loop_closed_while_popen_blocked_is_killed_and_reaped(
        loop, monkeypatch):
    entered, release, made = held_popen(monkeypatch)
    kids = children()
    task = loop.create_task(asyncio.create_subprocess_exec(*BLOCKED))
    run(loop, until(entered))
    loop.close()
    release.set()
    for _ in range(TIMEOUT * 100):
        if made and made[0].returncode is not None:
            break
        time.sleep(0.01)
    [proc] = made
    assert proc.returncode == -signal.SIGKILL and reaped(proc.pid)
    assert children() == kids
    assert not task.done()


def test_popen_keywords_pass_through(loop, tmp_path):
    code = ('import os, sys; print(os.getcwd()); print(os.environ.get("FERRO")); '
            'print(os.getsid(0) == os.getpid()); print(os.environ.get("PRE")); '
            'os.write(int(sys.argv[1]), b"fd")')

    async def main():
        rfd, wfd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                PY, '-c', code, str(wfd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL, cwd=str(tmp_path), env={'FERRO': 'yes', **_min_env()},
                pass_fds=(wfd,), start_new_session=True,
                preexec_fn=lambda: os.environ.__setitem__('PRE', 'ran'))
            out, _ = await proc.communicate()
            assert out.decode().split('\n')[:4] == [str(tmp_path), 'yes', 'True', 'None']
            assert os.read(rfd, 10) == b'fd'
            assert proc.returncode == 0
        finally:
            os.close(rfd)
            os.close(wfd)
    run(loop, main())


def _min_env():
    return {k: v for k, v in os.environ.items() if k in ('PATH', 'LD_LIBRARY_PATH')}


def test_argument_errors(loop):
    async def main():
        for kwargs, message in [({'universal_newlines': True}, 'universal_newlines must be False'),
                                ({'shell': True}, 'shell must be False'),
                                ({'bufsize': 4096}, 'bufsize must be 0'),
                                ({'text': True}, 'text must be False'),
                                ({'encoding': 'utf-8'}, 'encoding must be None'),
                                ({'errors': 'strict'}, 'errors must be None')]:
            with pytest.raises(ValueError, match=message):
                await loop.subprocess_exec(asyncio.SubprocessProtocol, 'true', **kwargs)
        with pytest.raises(ValueError, match='cmd must be a string'):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ['ls'])
        with pytest.raises(ValueError, match='shell must be True'):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, 'true', shell=False)
        with pytest.raises(ValueError, match='text must be False'):
            await asyncio.create_subprocess_shell('true', text=True)
    run(loop, main())


def test_popen_failure_leaks_nothing(loop):
    async def main():
        gc.collect()
        before = open_fds()
        with warnings.catch_warnings():
            warnings.simplefilter('error', ResourceWarning)
            for _ in range(5):
                with pytest.raises(FileNotFoundError):
                    await asyncio.create_subprocess_exec('/nonexistent/program',
                                                         stdin=subprocess.PIPE,
                                                         stdout=subprocess.PIPE)
            gc.collect()
        assert open_fds() - before == set()
    run(loop, main())


def test_many_children_no_zombies_no_fd_leaks(loop):
    async def main():
        gc.collect()
        before = open_fds()
        pids = []

        async def one(i):
            proc = await asyncio.create_subprocess_exec(
                PY, '-c', f'import sys; print({i}); sys.exit({i % 5})',
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            pids.append(proc.pid)
            out, err = await proc.communicate()
            assert out == b'%d\n' % i and err == b''
            return proc.returncode

        kids = children()
        codes = await asyncio.gather(*(one(i) for i in range(12)))
        assert codes == [i % 5 for i in range(12)]
        assert all(reaped(pid) for pid in pids)
        assert children() <= kids
        gc.collect()
        assert open_fds() - before == set()
    run(loop, main(), timeout=60)


def test_signal_handlers_keep_working_while_children_start_and_exit(loop):
    got = []
    seen = asyncio.Event()

    def on_usr1():
        got.append(signal.SIGUSR1)
        seen.set()

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
        try:
            for i in range(8):
                seen.clear()
                proc = await asyncio.create_subprocess_exec('true')
                os.kill(os.getpid(), signal.SIGUSR1)
                assert await proc.wait() == 0
                await asyncio.wait_for(seen.wait(), 5)
            assert len(got) == 8
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
    run(loop, main())


@ferroloop_only
def test_a_child_reaped_by_popen_itself_reports_its_status(loop):
    # asyncio's watchers find the status gone and report 255; ferroloop reaps
    # through the Popen object, so whoever reaps first, the status is kept.
    async def main():
        # Not exited before this test reaps it itself.
        t, p = await loop.subprocess_shell(lambda: Recorder(loop), 'sleep 0.3; exit 5',
                                           stdin=None, stdout=None, stderr=None)
        proc = t.get_extra_info('subprocess')
        assert proc.wait() == 5          # blocking, reaps the child
        assert t.get_returncode() is None
        assert await p.lost is None
        assert t.get_returncode() == 5
        t.close()
    run(loop, main())


@ferroloop_only
def test_a_pipe_that_fails_to_connect_fails_the_call_and_reaps_the_child(loop):
    async def broken(*args, **kwargs):
        raise RuntimeError('no pipe today')

    async def main():
        before = open_fds()
        kids = children()
        loop.connect_read_pipe = broken
        try:
            with pytest.raises(RuntimeError, match='no pipe today'):
                await asyncio.create_subprocess_exec(*BLOCKED, stdin=subprocess.PIPE,
                                                     stdout=subprocess.PIPE)
        finally:
            del loop.connect_read_pipe
        gc.collect()
        assert children() == kids
        assert open_fds() - before == set()
    run(loop, main())


# -- how ferroloop notices an exit -------------------------------------------------------

@ferroloop_only
def test_no_sigchld_handler_and_no_thread_per_child(loop):
    assert ferro_process.can_use_pidfd(), 'this kernel has pidfd_open'

    async def main():
        threads = threading.active_count()
        procs = [await asyncio.create_subprocess_exec(*BLOCKED) for _ in range(3)]
        assert threading.active_count() == threads
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
        for proc in procs:
            proc.kill()
        assert [await proc.wait() for proc in procs] == [-signal.SIGKILL] * 3
    run(loop, main())


@ferroloop_only
def test_thread_fallback_without_pidfd(loop, monkeypatch):
    monkeypatch.setattr(ferro_process, '_pidfd_usable', False)

    async def main():
        gc.collect()
        before = open_fds()
        proc = await asyncio.create_subprocess_shell('echo fallback; exit 2',
                                                     stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        assert out == b'fallback\n' and proc.returncode == 2
        proc = await asyncio.create_subprocess_exec(*BLOCKED)
        proc.terminate()
        assert await proc.wait() == -signal.SIGTERM
        assert reaped(proc.pid)
        assert open_fds() - before == set()
    run(loop, main())


@ferroloop_only
def test_thread_fallback_leaves_the_child_unreaped_until_the_loop_publishes_its_exit(
        loop, monkeypatch):
    # Between reaping and publishing, send_signal() could reach a recycled
    # pid: the thread only waits, the loop reaps.
    monkeypatch.setattr(ferro_process, '_pidfd_usable', False)

    async def main():
        proc = await asyncio.create_subprocess_exec(*BLOCKED)
        watcher = [t for t in threading.enumerate() if t.name == f'ferroloop-waitpid-{proc.pid}']
        assert len(watcher) == 1
        proc.kill()
        watcher[0].join(10)  # saw the exit; the loop has not run since
        assert not watcher[0].is_alive()
        assert proc.returncode is None
        # Still a zombie: waitid would raise ChildProcessError once reaped.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        proc.kill()  # harmless: the pid is still ours
        assert await proc.wait() == -signal.SIGKILL
        assert reaped(proc.pid)
    run(loop, main())


@ferroloop_only
def test_a_child_reaped_behind_our_back_reports_255(loop, caplog):
    async def main():
        # Not exited before this test reaps it itself.
        t, p = await loop.subprocess_shell(lambda: Recorder(loop), 'sleep 0.3; exit 5',
                                           stdin=None, stdout=None, stderr=None)
        os.waitpid(t.get_pid(), 0)        # not through Popen
        assert await p.lost is None
        assert t.get_returncode() == 255
        assert 'exit status already read' in caplog.text
        t.close()
    run(loop, main())


def fd_links():
    links = {}
    for fd in open_fds():
        try:
            links[fd] = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            pass                # the listing's own fd
    return links


@ferroloop_only
def test_pidfds_are_closed_when_the_loop_closes_first(loop):
    gc.collect()
    before = open_fds()

    async def main():
        proc = await asyncio.create_subprocess_exec(*BLOCKED)
        assert any('pidfd' in link for link in fd_links().values())
        return proc

    proc = run(loop, main())
    pid = proc.pid
    proc.kill()
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del proc
        gc.collect()
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass                # Popen.__del__ reaped it
    links = fd_links()
    assert not any('pidfd' in link for link in links.values())
    # Nothing new; the loop's own fds are gone with it.
    assert set(links) <= before


def test_ferroloop_run_helper_runs_subprocesses():
    async def main():
        proc = await asyncio.create_subprocess_exec('echo', 'hi', stdout=subprocess.PIPE)
        return await proc.communicate()

    assert ferroloop.run(main()) == (b'hi\n', None)


@ferroloop_only
def test_child_pipes_grow_when_they_fill_and_user_pipes_do_not(loop):
    import fcntl

    async def main():
        t, p = await loop.subprocess_exec(lambda: Recorder(loop), 'cat')
        stdin = t.get_pipe_transport(0)
        sizes = lambda: [fcntl.fcntl(t.get_pipe_transport(fd).get_extra_info('pipe').fileno(),
                                     fcntl.F_GETPIPE_SZ) for fd in (0, 1)]
        assert sizes() == [65536, 65536]
        stdin.write(b'z' * (1 << 20))
        assert sizes()[0] == 256 * 1024         # it filled at once
        while len(p.data[1]) < (1 << 19):
            await asyncio.sleep(0.001)
        assert sizes()[1] == 256 * 1024         # cat filled it
        stdin.close()
        assert await p.lost is None
        assert bytes(p.data[1]) == b'z' * (1 << 20)

        r, w = os.pipe()
        wt, wp = await loop.connect_write_pipe(asyncio.BaseProtocol, open(w, 'wb', 0))
        wt.write(b'y' * (1 << 18))
        await asyncio.sleep(0.01)
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == 65536
        wt.abort()
        os.close(r)
        t.close()
    run(loop, main())


@asyncio_since((3, 14), 'wait() returning while a grandchild holds the pipes')
def test_wait_returns_when_the_child_exits_though_a_grandchild_holds_its_pipes(loop):
    # The grandchild inherits stdin and stdout, says it is ready, and stays
    # until stdin reaches EOF: stdout never ends while the child is gone.
    code = ('import subprocess, sys; subprocess.run([sys.executable, "-c", '
            '"import sys; sys.stdout.write(\'ready\'); sys.stdout.flush(); sys.stdin.read()"])')

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, '-c', code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            waiting = asyncio.ensure_future(proc.wait())
            assert await proc.stdout.readexactly(5) == b'ready'
            proc.kill()
            return await asyncio.wait_for(waiting, 10)
        finally:
            proc.stdin.close()  # the grandchild's stdin ends: it leaves
            await proc.stdout.read()

    assert run(loop, main(), timeout=20) == -signal.SIGKILL
