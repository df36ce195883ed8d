"""The bad-input table: every public method of the loop, the Server and each
transport kind, called with wrong values per argument and in wrong states.

``python tests/bad_input_table.py asyncio|ferroloop`` runs the whole table on
one loop and prints one JSON line per call: its id and its outcome. Each kind
of loop runs in its own process (a crash then fails the test instead of
killing it); test_bad_input.py runs both and compares them. Every call gets a
fresh loop and fresh objects, and is bounded by CALL_TIMEOUT.

An outcome is a list: how the call ended (``ok``, ``raise`` when the call
itself raised, ``await`` when awaiting what it returned raised, ``timeout``,
``died`` when the loop's run itself raised), the exception's type and
message, then what reached the exception handler.
"""

import asyncio
import concurrent.futures
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings

CALL_TIMEOUT = 1.0
CASE_TIMEOUT = 10.0


# -- wrong values ----------------------------------------------------------

# A closed fd's number, far above those in use: fds are handed out lowest
# first, so nothing a call opens takes it back meanwhile.
_CLOSED_FD = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024) - 24


def _closed_fd():
    r, w = os.pipe()
    os.dup2(r, _CLOSED_FD)
    for fd in (r, w, _CLOSED_FD):
        os.close(fd)
    return _CLOSED_FD


def _closed_socket():
    s = socket.socket()
    s.close()
    return s


async def _coroutine_value():
    pass


# label -> factory: made fresh for each call (a coroutine is single use, a
# closed fd's number must not be taken by the time of the call).
WRONG_VALUES = {
    'None': lambda: None,
    'str': lambda: 'x',
    'bytes': lambda: b'x',
    'negative': lambda: -1,
    'nan': lambda: math.nan,
    'inf': lambda: math.inf,
    '-inf': lambda: -math.inf,
    '2**64': lambda: 2 ** 64,
    '-2**64': lambda: -2 ** 64,
    'float': lambda: 1.5,
    'bool': lambda: True,
    'closed fd': _closed_fd,
    'closed socket': _closed_socket,
    'coroutine': _coroutine_value,
    'non-callable': object,
    'read-only memoryview': lambda: memoryview(b'abcdef'),
    'non-contiguous memoryview': lambda: memoryview(bytearray(b'abcdef'))[::2],
    'list': lambda: [1],
    'dict': lambda: {},
    'empty str': lambda: '',
}


def _make_value(env, label):
    value = WRONG_VALUES[label]()
    if label == 'closed fd':
        env.closed_fds.append(value)
    return value() if label == 'coroutine' else value


# -- the objects calls are made on ----------------------------------------

class Quiet(asyncio.Protocol):
    pass


class QuietDatagram(asyncio.DatagramProtocol):
    pass


class QuietSubprocess(asyncio.SubprocessProtocol):
    pass


def _noop(*args):
    pass


class Env:
    """What one call needs: raw sockets, fds and files, plus the target.

    Sockets that a valid call would wait on are primed (data sent, a
    connection queued) so valid calls return at once on both loops.
    """

    count = 0

    def __init__(self, loop, tmp):
        self.loop = loop
        self.tmp = tmp
        self.closers = []
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.peer.send(b'hello')
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.queued = socket.create_connection(('127.0.0.1', self.port))
        self.unconnected = socket.socket()
        self.unconnected.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(('127.0.0.1', 0))
        self.udp.setblocking(False)
        self.udp.sendto(b'dgram', self.udp.getsockname())
        self.empty, self.empty_peer = socket.socketpair()
        self.empty.setblocking(False)
        self.rfd, self.wfd = os.pipe()
        self.file = open(__file__, 'rb')
        Env.count += 1
        self.unix_path = os.path.join(tmp, f'l{Env.count}')
        self.unix_listener = socket.socket(socket.AF_UNIX)
        self.unix_listener.bind(self.unix_path)
        self.unix_listener.listen()
        self.new_unix_path = os.path.join(tmp, f'n{Env.count}')
        self.closers.append(lambda: _unlink(self.unix_path, self.new_unix_path))
        for s in (self.sock, self.peer, self.listener, self.queued, self.unconnected,
                  self.udp, self.file, self.unix_listener, self.empty, self.empty_peer):
            self.closers.append(s.close)
        for fd in (self.rfd, self.wfd):
            self.closers.append(lambda fd=fd: _close_fd(fd))
        self.target = loop
        self.transport = None
        self.closed_fds = []
        self.proc = None

    def close(self):
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                pass


def _unlink(*paths):
    for path in paths:
        if os.path.exists(path):
            os.unlink(path)


def _close_fd(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _tls_contexts(tmp):
    key, cert = os.path.join(tmp, 'key.pem'), os.path.join(tmp, 'cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
                    '-keyout', key, '-out', cert, '-subj', '/CN=localhost'],
                   check=True, capture_output=True)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    return server, client


TLS = {}


async def _stream_transport(env):
    env.sock.recv(16)  # the primed data, which the protocol would get meanwhile
    tr, _ = await env.loop.create_connection(Quiet, sock=env.sock)
    return tr


async def _tls_transport(env):
    server = await env.loop.create_server(Quiet, '127.0.0.1', 0, ssl=TLS['server'])
    env.closers.append(server.close)
    port = server.sockets[0].getsockname()[1]
    tr, _ = await env.loop.create_connection(Quiet, '127.0.0.1', port, ssl=TLS['client'],
                                             server_hostname='localhost')
    return tr


async def _datagram_transport(env):
    tr, _ = await env.loop.create_datagram_endpoint(QuietDatagram, sock=env.udp)
    return tr


async def _read_pipe(env):
    tr, _ = await env.loop.connect_read_pipe(Quiet, os.fdopen(env.rfd, 'rb', buffering=0))
    return tr


async def _write_pipe(env):
    tr, _ = await env.loop.connect_write_pipe(Quiet, os.fdopen(env.wfd, 'wb', buffering=0))
    return tr


async def _subprocess(env):
    tr, _ = await env.loop.subprocess_exec(QuietSubprocess, 'cat', stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE)
    env.proc = tr
    return tr


async def _server(env):
    return await env.loop.create_server(Quiet, '127.0.0.1', 0)


TARGETS = {
    'stream': _stream_transport,
    'tls': _tls_transport,
    'datagram': _datagram_transport,
    'read pipe': _read_pipe,
    'write pipe': _write_pipe,
    'subprocess': _subprocess,
    'server': _server,
}


# -- the table -------------------------------------------------------------

# An argument given as a string starting with '@' is made by _resolve (or is
# an attribute of the Env); ('!', label) is the wrong value of that label.

LOOP_METHODS = [
    # name, positional arguments, keyword arguments (valid values)
    ('call_soon', ['@cb'], {'context': None}),
    ('call_soon_threadsafe', ['@cb'], {'context': None}),
    ('call_later', [0, '@cb'], {'context': None}),
    ('call_at', ['@now', '@cb'], {'context': None}),
    ('create_future', [], {}),
    ('create_task', ['@coro'], {'name': 't'}),
    ('time', [], {}),
    ('run_in_executor', [None, '@cb'], {}),
    ('set_default_executor', ['@executor'], {}),
    ('getaddrinfo', ['127.0.0.1', 80], {'family': 0, 'type': 0, 'proto': 0, 'flags': 0}),
    ('getnameinfo', [('127.0.0.1', 80), 0], {}),
    ('create_connection', ['@protocol', '127.0.0.1', '@port'],
     {'ssl': None, 'family': 0, 'proto': 0, 'flags': 0, 'local_addr': None,
      'server_hostname': None, 'ssl_handshake_timeout': None, 'happy_eyeballs_delay': None,
      'interleave': None}),
    ('create_server', ['@protocol', '127.0.0.1', 0],
     {'family': socket.AF_INET, 'flags': socket.AI_PASSIVE, 'backlog': 100, 'ssl': None,
      'reuse_address': None, 'reuse_port': None, 'ssl_handshake_timeout': None,
      'start_serving': True}),
    ('create_unix_connection', ['@protocol', '@unix_path'],
     {'ssl': None, 'server_hostname': None, 'ssl_handshake_timeout': None}),
    ('create_unix_server', ['@protocol', '@new_unix_path'],
     {'backlog': 100, 'ssl': None, 'ssl_handshake_timeout': None, 'start_serving': True}),
    ('connect_accepted_socket', ['@protocol', '@sock'], {'ssl': None, 'ssl_handshake_timeout': None}),
    ('create_datagram_endpoint', ['@datagram_protocol'],
     {'local_addr': ('127.0.0.1', 0), 'family': 0, 'proto': 0, 'flags': 0,
      'reuse_port': None, 'allow_broadcast': None}),
    ('connect_read_pipe', ['@protocol', '@read_pipe'], {}),
    ('connect_write_pipe', ['@protocol', '@write_pipe'], {}),
    ('subprocess_exec', ['@subprocess_protocol', 'true'],
     {'stdin': subprocess.DEVNULL, 'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}),
    ('subprocess_shell', ['@subprocess_protocol', 'true'],
     {'stdin': subprocess.DEVNULL, 'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}),
    ('add_reader', ['@rfd', '@cb'], {}),
    ('add_writer', ['@wfd', '@cb'], {}),
    ('remove_reader', ['@rfd'], {}),
    ('remove_writer', ['@wfd'], {}),
    ('sock_recv', ['@sock', 3], {}),
    ('sock_recv_into', ['@sock', '@buffer'], {}),
    ('sock_recvfrom', ['@udp', 10], {}),
    ('sock_recvfrom_into', ['@udp', '@buffer', 0], {}),
    ('sock_sendall', ['@sock', b'data'], {}),
    ('sock_sendto', ['@udp', b'data', '@udp_addr'], {}),
    ('sock_connect', ['@unconnected', '@listen_addr'], {}),
    ('sock_accept', ['@listener'], {}),
    ('sock_sendfile', ['@sock', '@file', 0, 10], {'fallback': True}),
    ('add_signal_handler', [signal.SIGUSR1, '@cb'], {}),
    ('remove_signal_handler', [signal.SIGUSR1], {}),
    ('set_task_factory', [None], {}),
    ('get_task_factory', [], {}),
    ('set_exception_handler', ['@handler'], {}),
    ('get_exception_handler', [], {}),
    ('default_exception_handler', [{'message': 'm'}], {}),
    ('call_exception_handler', [{'message': 'm'}], {}),
    ('set_debug', [False], {}),
    ('get_debug', [], {}),
    ('run_until_complete', ['@future'], {}),
    ('run_forever', [], {}),
    ('stop', [], {}),
    ('is_running', [], {}),
    ('is_closed', [], {}),
    ('shutdown_asyncgens', [], {}),
    ('shutdown_default_executor', [], {}),
]

TRANSPORT_METHODS = [
    ('get_extra_info', ['sockname'], {'default': None}),
    ('is_closing', [], {}),
    ('close', [], {}),
    ('set_protocol', ['@protocol_instance'], {}),
    ('get_protocol', [], {}),
    ('is_reading', [], {}),
    ('pause_reading', [], {}),
    ('resume_reading', [], {}),
    ('set_write_buffer_limits', [1000, 100], {}),
    ('get_write_buffer_size', [], {}),
    ('get_write_buffer_limits', [], {}),
    ('write', [b'data'], {}),
    ('writelines', [[b'data']], {}),
    ('write_eof', [], {}),
    ('can_write_eof', [], {}),
    ('abort', [], {}),
    ('sendto', [b'data', '@udp_addr'], {}),
    ('get_pid', [], {}),
    ('get_returncode', [], {}),
    ('get_pipe_transport', [0], {}),
    ('send_signal', [0], {}),
    ('terminate', [], {}),
    ('kill', [], {}),
]

# Loop methods that take a transport.
TRANSPORT_LOOP_METHODS = [
    ('sendfile', ['@transport', '@file', 0, 10], {'fallback': True}),
    ('start_tls', ['@transport', '@protocol_instance', '@client_tls'],
     {'server_side': False, 'server_hostname': 'localhost', 'ssl_handshake_timeout': 0.2}),
]

# Each kind's methods are those its stdlib class has, so the table is the same
# in both processes.
STDLIB_CLASSES = {
    'stream': asyncio.selector_events._SelectorSocketTransport,
    'tls': asyncio.sslproto._SSLProtocolTransport,
    'datagram': asyncio.selector_events._SelectorDatagramTransport,
    'read pipe': asyncio.unix_events._UnixReadPipeTransport,
    'write pipe': asyncio.unix_events._UnixWritePipeTransport,
    'subprocess': asyncio.unix_events._UnixSubprocessTransport,
}

SERVER_METHODS = ['close', 'get_loop', 'is_serving', 'start_serving', 'close_clients',
                  'abort_clients']

# Only the stdlib loop's own methods are in the table (3.11's Server has no
# close_clients): the table is the same in both processes.
_STDLIB_SERVER = asyncio.base_events.Server

# Loop methods a debug-mode loop refuses from another thread.
THREAD_CHECKED = ['call_soon', 'call_later', 'call_at', 'create_task', 'create_future',
                  'add_reader', 'remove_reader', 'add_writer', 'remove_writer',
                  'call_soon_threadsafe', 'run_in_executor']


def _resolve(env, value):
    if not (isinstance(value, str) and value.startswith('@')):
        return value
    name = value[1:]
    loop = env.loop
    if name == 'cb':
        return _noop
    if name == 'now':
        return loop.time()
    if name == 'coro':
        return _coroutine_value()
    if name == 'executor':
        ex = concurrent.futures.ThreadPoolExecutor(1)
        env.closers.append(ex.shutdown)
        return ex
    if name in ('protocol', 'datagram_protocol', 'subprocess_protocol'):
        return {'protocol': Quiet, 'datagram_protocol': QuietDatagram,
                'subprocess_protocol': QuietSubprocess}[name]
    if name == 'protocol_instance':
        return Quiet()
    if name == 'read_pipe':
        return os.fdopen(os.dup(env.rfd), 'rb', buffering=0)
    if name == 'write_pipe':
        return os.fdopen(os.dup(env.wfd), 'wb', buffering=0)
    if name == 'buffer':
        return bytearray(10)
    if name == 'udp_addr':
        return env.udp.getsockname()
    if name == 'listen_addr':
        return ('127.0.0.1', env.port)
    if name == 'handler':
        return env.handler
    if name == 'future':
        return loop.create_future()
    if name == 'client_tls':
        return TLS['client']
    return getattr(env, name)


def _variants(args, kwargs):
    """(label, args, kwargs): the valid call, then each argument wrong in turn."""
    yield 'valid', args, kwargs
    for i in range(len(args)):
        for label in WRONG_VALUES:
            yield f'arg{i}={label}', args[:i] + [('!', label)] + args[i + 1:], kwargs
    for key in kwargs:
        for label in WRONG_VALUES:
            yield f'{key}={label}', args, {**kwargs, key: ('!', label)}


def _value(env, value):
    if isinstance(value, tuple) and value[:1] == ('!',):
        return _make_value(env, value[1])
    return _resolve(env, value)


def cases():
    """Every call of the table: (id, target kind, state, method, args, kwargs)."""
    for name, args, kwargs in LOOP_METHODS:
        for label, a, k in _variants(args, kwargs):
            yield (f'loop.{name}({label})', 'loop', 'open', name, a, k)
            yield (f'closed loop.{name}({label})', 'loop', 'closed', name, a, k)
        if name in THREAD_CHECKED:
            yield (f'loop.{name}() from another thread in debug mode', 'loop', 'thread',
                   name, args, kwargs)
    for kind in ('stream', 'tls', 'datagram', 'read pipe', 'write pipe', 'subprocess'):
        for name, args, kwargs in TRANSPORT_METHODS:
            if not hasattr(STDLIB_CLASSES[kind], name):
                continue
            for label, a, k in _variants(args, kwargs):
                yield (f'{kind}.{name}({label})', kind, 'open', name, a, k)
                if label == 'valid' or name not in ('close', 'abort'):
                    yield (f'closed {kind}.{name}({label})', kind, 'closed', name, a, k)
            if name == 'writelines':
                for label in WRONG_VALUES:
                    # One wrong item in the list.
                    yield (f'{kind}.writelines(item={label})', kind, 'open', name,
                           [[b'ok', ('!', label)]], {})
        # (asyncio's start_tls over a TLS transport hangs)
        if kind == 'stream':
            for name, args, kwargs in TRANSPORT_LOOP_METHODS:
                for label, a, k in _variants(args, kwargs):
                    yield (f'loop.{name}({kind}, {label})', kind, 'open loop', name, a, k)
    for name in SERVER_METHODS:
        if hasattr(_STDLIB_SERVER, name):
            yield (f'server.{name}()', 'server', 'open', name, [], {})
            yield (f'closed server.{name}()', 'server', 'closed', name, [], {})
    for name in ('serve_forever', 'wait_closed'):  # both wait while it is open
        yield (f'closed server.{name}()', 'server', 'closed', name, [], {})
    yield from _state_cases()


def _state_cases():
    for name in ('add_reader', 'add_writer'):
        yield (f'loop.{name}() twice on one fd', 'loop', 'twice', name, ['@rfd', '@cb'], {})
        yield (f'loop.{name}() then the fd closed', 'loop', 'fd closed', name, ['@rfd', '@cb'], {})
    for kind in ('stream', 'tls', 'datagram', 'read pipe', 'write pipe'):
        for name in ('add_reader', 'add_writer', 'remove_reader', 'remove_writer'):
            yield (f'loop.{name}() on the fd of a {kind} transport', kind, 'own fd', name,
                   ['@transport_fd', '@cb'] if name.startswith('add') else ['@transport_fd'], {})
    yield ('loop.sock_recv(sock, 0) with nothing to read', 'loop', 'open', 'sock_recv',
           ['@empty', 0], {})
    for name, args in (('sock_recv', ['@transport_sock', 3]), ('sock_sendall', ['@transport_sock', b'x'])):
        yield (f'loop.{name}() on a stream transport\'s socket', 'stream', 'own fd', name, args, {})


# -- running one call ------------------------------------------------------

def _describe(exc):
    return [type(exc).__name__, str(exc)]


def _normalize(text, env):
    names = {}
    for obj, name in ((env.loop, 'loop'), (env.target, 'target'), (env.transport, 'transport')):
        if obj is not None:
            names[repr(obj)] = f'<{name}>'
    for r, name in names.items():
        text = text.replace(r, name)
    # Which fd a transport has, and its class's name, differ between loops.
    text = re.sub(r'File descriptor \d+ is used by transport <.*>$',
                  'File descriptor <fd> is used by transport <transport>', text)
    for fd in env.closed_fds:
        text = re.sub(rf'\b{fd}\b', '<closed fd>', text)
    return re.sub(r'0x[0-9a-f]+', '0x?', text)


async def _await(result, name):
    if asyncio.iscoroutine(result) or (asyncio.isfuture(result) and not name == 'create_future'):
        try:
            await asyncio.wait_for(result, CALL_TIMEOUT)
        except asyncio.TimeoutError:
            return ['timeout']
        except Exception as exc:
            return ['await', *_describe(exc)]
    return ['ok']


def _step(result):
    """A closed loop runs nothing: step a returned coroutine once by hand."""
    if asyncio.iscoroutine(result):
        try:
            result.send(None)
        except StopIteration:
            return ['ok']
        except Exception as exc:
            return ['await', *_describe(exc)]
        result.close()
        return ['pending']
    if asyncio.isfuture(result):
        result.cancel()
    return ['ok']


def _call(env, obj, name, args, kwargs):
    fn = getattr(obj, name)
    a = [_value(env, v) for v in args]
    k = {key: _value(env, v) for key, v in kwargs.items()}
    if name == 'writelines' and a and isinstance(a[0], list):
        a[0] = [_value(env, v) for v in a[0]]
    return fn(*a, **k)


async def _setup(env, kind):
    if kind == 'loop':
        return env.loop
    target = await asyncio.wait_for(TARGETS[kind](env), CALL_TIMEOUT * 2)
    env.closers.append(lambda: _abort(target))
    if kind != 'server':
        env.transport = target
        info = target.get_extra_info('socket')
        if info is not None:
            env.transport_sock = info
            env.transport_fd = info.fileno()
        elif kind in ('read pipe', 'write pipe'):
            env.transport_fd = target.get_extra_info('pipe').fileno()
    return target


def _abort(target):
    if isinstance(target, asyncio.SubprocessTransport):
        if target.get_returncode() is None:
            try:
                target.kill()
            except ProcessLookupError:
                pass
        target.close()
    elif isinstance(target, asyncio.BaseTransport):
        target.abort() if hasattr(target, 'abort') else target.close()
    else:
        target.close()


async def _run_open(env, case):
    _, kind, state, name, args, kwargs = case
    target = await _setup(env, kind)
    env.target = target
    obj = env.loop if state in ('open loop', 'own fd') or kind == 'loop' else target
    if state == 'closed':
        target.close()
        if kind == 'server':
            await target.wait_closed()
        elif kind == 'subprocess':
            await _reaped(target)
        await _ticks()
    if state == 'twice':
        _call(env, obj, name, args, kwargs)
    try:
        result = _call(env, obj, name, args, kwargs)
        if state == 'fd closed':
            os.close(env.rfd)
            await _ticks()
            result = env.loop.remove_writer(env.rfd) if name == 'add_writer' else env.loop.remove_reader(env.rfd)
    except Exception as exc:
        outcome = ['raise', *_describe(exc)]
    else:
        outcome = await _await(result, name)
    await _ticks()
    return outcome


async def _reaped(transport):
    """Until the loop has seen the killed child exit (when is timing)."""
    for _ in range(200):
        if transport.get_returncode() is not None:
            return
        await asyncio.sleep(0.005)


async def _ticks():
    for _ in range(4):
        await asyncio.sleep(0)


def _run_thread(env, case):
    _, kind, state, name, args, kwargs = case
    outcome = []

    def other():
        try:
            result = _call(env, env.loop, name, args, kwargs)
        except Exception as exc:
            outcome.extend(['raise', *_describe(exc)])
        else:
            outcome.extend(_step(result))

    env.loop.set_debug(True)
    t = threading.Thread(target=other)
    t.start()
    t.join(CALL_TIMEOUT)
    return outcome if not t.is_alive() else ['timeout']


def run_case(make_loop, case, tmp):
    loop = make_loop()
    handled = []

    def handler(loop, context):
        exc = context.get('exception')
        handled.append([type(exc).__name__, str(exc)] if exc is not None
                       else [context.get('message')])

    loop.set_exception_handler(handler)
    env = Env(loop, tmp)
    env.handler = handler
    try:
        state = case[2]
        if state == 'closed' and case[1] == 'loop':
            loop.close()
            try:
                outcome = _step(_call(env, loop, case[3], case[4], case[5]))
            except Exception as exc:
                outcome = ['raise', *_describe(exc)]
        elif state == 'thread':
            outcome = _run_thread(env, case)
        else:
            try:
                outcome = loop.run_until_complete(
                    asyncio.wait_for(_run_open(env, case), CASE_TIMEOUT))
            except asyncio.TimeoutError:
                outcome = ['timeout']
            except Exception as exc:
                outcome = ['died', *_describe(exc)]
        outcome = [_normalize(str(x), env) for x in outcome]
        outcome.append([[_normalize(str(x), env) for x in h] for h in handled])
        return outcome
    finally:
        env.close()
        if not loop.is_closed() and not loop.is_running():
            try:
                loop.run_until_complete(_ticks())
            except Exception:
                pass
            loop.close()


def main(kind):
    if kind == 'ferroloop':
        import ferroloop
        make_loop = ferroloop.new_event_loop
    else:
        make_loop = asyncio.SelectorEventLoop
    warnings.simplefilter('ignore')
    import logging
    logging.disable(logging.CRITICAL)
    only = sys.argv[2] if len(sys.argv) > 2 else None
    tmp = tempfile.mkdtemp(prefix='bad-input-')
    try:
        os.chdir(tmp)  # relative paths (a str for a path) land here, apart
        TLS['server'], TLS['client'] = _tls_contexts(tmp)
        for case in cases():
            if only and only not in case[0]:
                continue
            outcome = run_case(make_loop, case, tmp)
            print(json.dumps([case[0], outcome]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1])
