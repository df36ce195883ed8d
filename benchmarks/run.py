"""ferroloop benchmark harness: asyncio vs uvloop vs ferroloop, interleaved.

    python benchmarks/run.py [--rounds N] [--quick] [--only name,pattern*,...]
                             [--loops asyncio,uvloop,ferroloop] [--markdown out.md]
                             [--http-client wrk|c]

Method (see README.md for the why):
- every measurement is a fresh subprocess (no state carried from one loop or
  benchmark to the next);
- all of them pinned to ONE CPU -- for echo, server and client together, with
  the client SCHED_BATCH -- because on these 2-core machines a cross-CPU
  wake-up costs ~50 us per round trip and would hide every loop difference;
- rounds interleave the loops (round 1: A B C for each benchmark, round 2:
  B C A, round 3: C A B, ...), so drift in machine load hits every loop
  alike and no loop always runs right after the same other one;
- the table reports medians over the rounds; raw samples go to
  benchmarks/results/run-*.json.
The C epoll echo server (c_echo/, compiled here with cc) is measured the same
way as the ceiling for the echo rows. The stream rows (Protocol / streams echo,
bulk, HTTP) run stream_server.py under the C load client c_echo/stream_load.c,
or wrk for HTTP when it is installed. The TLS rows run tls_server.py under
tls_client.py, with a certificate made here with the openssl command.
"""

import argparse
import datetime
import fnmatch
import importlib.util
import json
import os
import platform
import re
import select
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loops as loops_mod  # noqa: E402
import micro               # noqa: E402
import report              # noqa: E402

ECHO_SIZES = {'echo_1k': 1024, 'echo_100k': 100 * 1024}

LABELS = {
    'call_soon_0': 'call_soon, 0 args (calls/s)',
    'call_soon_2': 'call_soon, 2 args (calls/s)',
    'call_later_cancel': 'call_later schedule+cancel (timers/s)',
    'timers_fire': 'call_later timers firing (timers/s)',
    'sleep0': 'await asyncio.sleep(0) (iterations/s)',
    'gather': 'create_task + gather (tasks/s)',
    'getaddrinfo': "getaddrinfo('127.0.0.1', 80) (calls/s)",
    'getaddrinfo_typed': "getaddrinfo('127.0.0.1', 80, type=SOCK_STREAM) (calls/s)",
    'echo_1k': 'sock_recv/sock_sendall echo 1 KiB (round trips/s)',
    'echo_100k': 'sock_recv/sock_sendall echo 100 KiB (round trips/s)',
    'udp_echo': 'UDP echo, 64 B datagrams, both endpoints on the loop (round trips/s)',
    'spawn_true': "create_subprocess_exec('true') + wait() (processes/s)",
    'pipe_cat': 'pipes through cat, 32 MiB via subprocess_exec (bytes/s)',
}

# The stream benchmarks: stream_server.py --kind KIND under the C load client
# (c_echo/stream_load.c) or wrk. Echo rows share their C ceiling by (size,
# connections): the C server is measured once per round for each pair.
STREAM = {}
for _kind, _prefix, _what in (('proto_echo', 'proto', 'Protocol echo'),
                              ('streams_echo', 'streams', 'streams echo')):
    for _size_name, _size in (('1k', 1024), ('10k', 10 * 1024), ('100k', 100 * 1024)):
        for _conns in (1, 10):
            _name = f'{_prefix}_{_size_name}_c{_conns}'
            STREAM[_name] = {'kind': _kind, 'client': 'echo', 'size': _size, 'conns': _conns,
                             'ceiling': f'ceiling_echo_{_size_name}_c{_conns}'}
            LABELS[_name] = (f'{_what} {_size // 1024} KiB, {_conns} conn{"s" * (_conns > 1)} '
                             f'(round trips/s)')
STREAM['bulk_down'] = {'kind': 'bulk_down', 'client': 'down', 'conns': 1}
LABELS['bulk_down'] = 'bulk: Protocol server writes, 1 conn (bytes/s)'
STREAM['bulk_up'] = {'kind': 'bulk_up', 'client': 'up', 'conns': 1}
LABELS['bulk_up'] = 'bulk: Protocol server reads, 1 conn (bytes/s)'
STREAM['http'] = {'kind': 'http', 'client': 'http', 'conns': 10}
LABELS['http'] = 'HTTP/1.1 keep-alive Protocol server, 10 conns (requests/s)'
STREAM['http_uvicorn'] = {'kind': 'asgi', 'client': 'http', 'conns': 4}
LABELS['http_uvicorn'] = 'HTTP/1.1 keep-alive, uvicorn + httptools, 4 conns (requests/s)'
# Rows derived from another row's runs: requests per second of the server's
# own CPU time (user + system). With the client on the same CPU, throughput
# is partly the scheduler's doing; CPU per request is what a loop controls.
PER_CPU = {'http_cpu': 'http', 'http_uvicorn_cpu': 'http_uvicorn'}
LABELS['http_cpu'] = 'HTTP Protocol server, per server CPU-second (requests/CPU-s)'
LABELS['http_uvicorn_cpu'] = 'HTTP uvicorn + httptools, per server CPU-second (requests/CPU-s)'

# The TLS rows: tls_server.py (the proto_echo Protocol behind ssl=) under the
# Python client tls_client.py (blocking ssl sockets); no C ceiling.
TLS = {
    'tls_echo_1k': {'mode': 'echo', 'size': 1024, 'warmup': 200},
    'tls_echo_100k': {'mode': 'echo', 'size': 100 * 1024, 'warmup': 200},
    'tls_handshake': {'mode': 'handshake', 'size': 16, 'warmup': 20},
}
LABELS['tls_echo_1k'] = 'TLS echo 1 KiB, Protocol server with ssl=, 1 conn (round trips/s)'
LABELS['tls_echo_100k'] = 'TLS echo 100 KiB, Protocol server with ssl=, 1 conn (round trips/s)'
LABELS['tls_handshake'] = ('TLS handshakes: new connection, handshake, one 16 B round trip, close '
                           '(connections/s)')

ALL_BENCHMARKS = list(micro.BENCHMARKS) + list(ECHO_SIZES) + list(STREAM) + list(PER_CPU) + list(TLS)
assert set(ALL_BENCHMARKS) == set(LABELS)

# Per-measurement budgets. The full run (7 rounds) takes ~9 minutes (about
# half of it the stream rows), --quick ~2 minutes; each subprocess also has a
# hard timeout so nothing can hang the run.
FULL = {'rounds': 7, 'micro_seconds': 0.4, 'echo_seconds': 1.0, 'stream_seconds': 0.4,
        'http_seconds': 1, 'tls_seconds': 1.0}
QUICK = {'rounds': 3, 'micro_seconds': 0.15, 'echo_seconds': 0.3, 'stream_seconds': 0.15,
         'http_seconds': 1, 'tls_seconds': 0.3}
ECHO_WARMUP = 200
ECHO_MAX_COUNT = 5_000_000
STREAM_WARMUP = 200             # untimed responses, over all connections
STREAM_MAX_COUNT = 5_000_000
BULK_BATCH = 251 * 32 * 1024    # ~7.8 MiB: whole chunks of the server's 251-byte pattern
BULK_MAX_BYTES = 64 << 30
HTTP_BODY = 'Hello, World!'     # what stream_server.py's HTTP server answers
TLS_MAX_COUNT = 1_000_000
PROCESS_TIMEOUT = 60


class MeasurementFailed(Exception):
    pass


# -- CPU placement --------------------------------------------------------------

def placement(cpu, batch):
    """preexec_fn for a child: pin it to `cpu`; SCHED_BATCH if `batch`.

    SCHED_BATCH marks the load client as CPU-bound: its wake-ups do not
    preempt the server, so the server finishes its loop turn (as it would on
    its own CPU) instead of being switched out mid-turn for every reply.
    """
    def apply():
        os.sched_setaffinity(0, {cpu})
        if batch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    return apply


# -- the C ceiling ----------------------------------------------------------------

def build_c(outdir):
    """Compile c_echo/ into outdir: (server, client, stream client) paths, or (None, reason)."""
    cc = shutil.which(os.environ.get('CC', 'cc'))
    if not cc:
        return None, 'no C compiler (cc) found'
    os.makedirs(outdir, exist_ok=True)
    built = []
    for name in ('epoll_echo', 'echo_client', 'stream_load'):
        src = os.path.join(HERE, 'c_echo', name + '.c')
        exe = os.path.join(outdir, name)
        proc = subprocess.run([cc, '-O2', '-o', exe, src], capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f'building {name}.c failed:\n{proc.stderr}'
        built.append(exe)
    return tuple(built), None


def results_dir():
    d = os.path.join(HERE, 'results')
    try:
        os.makedirs(d, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    return '/tmp/ferroloop-benchmarks'


def make_tls_cert(outdir):
    """A self-signed certificate for localhost / 127.0.0.1 in outdir: (cert, key), or (None, reason).

    An EC P-256 key: its handshake costs the server far less CPU than an
    RSA-2048 signature, so the handshake row measures the loop more than the key.
    """
    openssl = shutil.which('openssl')
    if not openssl:
        return None, 'no openssl command to make a certificate'
    os.makedirs(outdir, exist_ok=True)
    cert, key = os.path.join(outdir, 'cert.pem'), os.path.join(outdir, 'key.pem')
    proc = subprocess.run([openssl, 'req', '-x509', '-newkey', 'ec',
                           '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
                           '-subj', '/CN=localhost',
                           '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                           '-keyout', key, '-out', cert], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f'openssl could not make a certificate:\n{proc.stderr}'
    return (cert, key), None


# -- one measurement ------------------------------------------------------------

class Progress:
    """One line of progress: measurements done of the total, and an estimate of the time left."""

    def __init__(self, total):
        self.total, self.done_count, self.started = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def step(self, where):
        self.done_count += 1
        spent = time.monotonic() - self.started
        left = spent / self.done_count * (self.total - self.done_count)
        line = f'[{self.done_count}/{self.total}] {where}, about {left:.0f} s left'
        if self.tty:
            print('\r' + line.ljust(60), end='', file=sys.stderr, flush=True)
        elif spent - self.last_print >= 30 or self.done_count == self.total:
            # A log (CI, a file): a line every 30 s, not one per measurement.
            self.last_print = spent
            print(line, file=sys.stderr, flush=True)

    def say(self, message):
        print(('\n' if self.tty else '') + message, file=sys.stderr, flush=True)

    def done(self):
        if self.tty:
            print(file=sys.stderr)


def tail(text, lines=15):
    return '\n'.join((text or '').strip().splitlines()[-lines:])


def last_json(stdout, what):
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise MeasurementFailed(f'{what}: no JSON result in output {stdout!r}') from None


def run_micro(loop, bench, cfg):
    cmd = [sys.executable, os.path.join(HERE, 'micro.py'), '--loop', loop, '--bench', bench,
           '--seconds', str(cfg['micro_seconds'])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
                              preexec_fn=placement(cfg['cpu'], batch=False))
    except subprocess.TimeoutExpired:
        raise MeasurementFailed(f'timed out after {PROCESS_TIMEOUT}s') from None
    if proc.returncode != 0:
        raise MeasurementFailed(f'exit status {proc.returncode}\n{tail(proc.stderr)}')
    return last_json(proc.stdout, 'micro.py')['rate']


def run_echo(loop, size, cfg):
    """Round trips/s of one client against one fresh server (a loop, or 'C')."""
    cpu = cfg['cpu']
    server_timeout = int(cfg['echo_seconds'] + 30)
    if loop == report.C_CEILING:
        server_cmd = [cfg['c_server'], str(server_timeout)]
    else:
        server_cmd = [sys.executable, os.path.join(HERE, 'echo_server.py'), '--loop', loop,
                      '--timeout', str(server_timeout)]
    server, port = start_server(server_cmd, cpu)
    try:
        if cfg['client'] == 'c':
            client_cmd = [cfg['c_client'], str(port), str(size), str(cfg['echo_seconds']),
                          str(ECHO_MAX_COUNT), str(ECHO_WARMUP)]
        else:
            client_cmd = [sys.executable, os.path.join(HERE, 'echo_client.py'),
                          '--port', str(port), '--size', str(size),
                          '--seconds', str(cfg['echo_seconds']),
                          '--max-count', str(ECHO_MAX_COUNT), '--warmup', str(ECHO_WARMUP)]
        result = run_client(client_cmd, cpu, server, 'echo client')
        echoed = server_result(server, 'echo server')['bytes']
        if echoed != result['bytes']:
            raise MeasurementFailed(f'server echoed {echoed} bytes, client sent and received '
                                    f'{result["bytes"]}')
        if result['roundtrips'] <= 0:
            raise MeasurementFailed('no timed round trips')
        return result['roundtrips'] / result['seconds']
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def start_server(cmd, cpu, stdin=None):
    """Starts a benchmark server pinned to `cpu`; returns (process, port)."""
    server = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, preexec_fn=placement(cpu, batch=False))
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        if not ready:
            raise MeasurementFailed('server did not report its port within 30s')
        line = server.stdout.readline()
        if not line:
            raise MeasurementFailed(f'server exited early\n{tail(server.stderr.read())}')
        port = json.loads(line)['port']
        if os.sched_getaffinity(server.pid) != {cpu}:
            raise MeasurementFailed(f'server not pinned to CPU {cpu}')
    except BaseException:
        server.kill()
        server.wait()
        raise
    return server, port


def run_client(cmd, cpu, server, what):
    """Runs a load client pinned to `cpu`, SCHED_BATCH, against `server`; its JSON result."""
    try:
        client = subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
                                preexec_fn=placement(cpu, batch=True))
    except subprocess.TimeoutExpired:
        raise MeasurementFailed(f'client timed out after {PROCESS_TIMEOUT}s') from None
    if client.returncode != 0:
        server.kill()       # it may be stuck; its stderr may say why
        _, err = server.communicate()
        raise MeasurementFailed(f'client exit status {client.returncode}\n{tail(client.stderr)}'
                                f'\nserver stderr:\n{tail(err)}')
    result = last_json(client.stdout, what)
    if result['sched_policy'] != os.SCHED_BATCH or result['cpus'] != [cpu]:
        raise MeasurementFailed(f'client ran with policy {result["sched_policy"]} on CPUs '
                                f'{result["cpus"]}, not SCHED_BATCH on [{cpu}]')
    return result


def server_result(server, what):
    """The server's final JSON line, once it has exited by itself (closing its stdin)."""
    try:
        out, err = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        raise MeasurementFailed('server did not exit within 30s of the client closing') from None
    if server.returncode != 0:
        raise MeasurementFailed(f'server exit status {server.returncode}\n{tail(err)}')
    return last_json(out, what)


def stream_client_cmd(spec, port, cfg):
    client = cfg['c_stream']
    if spec['client'] == 'echo':
        return [client, 'echo', str(port), str(spec['size']), str(spec['conns']),
                str(cfg['stream_seconds']), str(STREAM_MAX_COUNT), str(STREAM_WARMUP)]
    if spec['client'] == 'http':
        return [client, 'http', str(port), str(spec['conns']), str(cfg['http_seconds']),
                str(STREAM_MAX_COUNT), str(STREAM_WARMUP), HTTP_BODY]
    return [client, spec['client'], str(port), str(cfg['stream_seconds']), str(BULK_MAX_BYTES),
            str(BULK_BATCH)]


WRK_REQUESTS = re.compile(r'^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b', re.M)
WRK_RATE = re.compile(r'^Requests/sec:\s*([\d.]+)', re.M)


def run_wrk(spec, port, cfg):
    """wrk against the server: (rate, client result dict like stream_load's)."""
    cpu = cfg['cpu']
    cmd = [cfg['wrk'], '-t1', f'-c{spec["conns"]}', f'-d{int(cfg["http_seconds"])}s',
           '--timeout', '10s', f'http://127.0.0.1:{port}/']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=placement(cpu, batch=True))
    try:
        policy, cpus = os.sched_getscheduler(proc.pid), os.sched_getaffinity(proc.pid)
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MeasurementFailed(f'wrk timed out after {PROCESS_TIMEOUT}s') from None
    except ProcessLookupError:      # exited before we looked: cannot vouch for its placement
        raise MeasurementFailed('wrk exited at once') from None
    if proc.returncode != 0:
        raise MeasurementFailed(f'wrk exit status {proc.returncode}\n{tail(err or out)}')
    if policy != os.SCHED_BATCH or cpus != {cpu}:
        raise MeasurementFailed(f'wrk ran with policy {policy} on CPUs {sorted(cpus)}')
    for bad in ('Socket errors', 'Non-2xx or 3xx'):
        if bad in out:
            raise MeasurementFailed(f'wrk reports errors:\n{tail(out)}')
    done, rate = WRK_REQUESTS.search(out), WRK_RATE.search(out)
    if not done or not rate:
        raise MeasurementFailed(f'cannot read wrk output:\n{tail(out)}')
    return float(rate.group(1)), {'requests': int(done.group(1))}


def cpu_seconds(pid):
    """User plus system CPU time a process has used (also once it has exited, until reaped)."""
    with open(f'/proc/{pid}/stat') as f:
        stat = f.read()
    fields = stat[stat.rindex(')') + 2:].split()      # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run_stream(loop, bench, cfg):
    """One stream benchmark on one fresh server (a loop, or 'C' for the echo ceiling).

    Returns (rate, requests per server CPU-second or None).
    """
    spec = STREAM[bench]
    cpu = cfg['cpu']
    seconds = cfg['http_seconds'] if spec['client'] == 'http' else cfg['stream_seconds']
    server_timeout = int(seconds + 30)
    stdin = None
    if loop == report.C_CEILING:
        server_cmd = [cfg['c_server'], str(server_timeout), str(spec['conns'])]
    elif spec['kind'] == 'asgi':
        # Serves until its stdin closes (server_result closes it).
        server_cmd = [sys.executable, os.path.join(HERE, 'asgi_server.py'), '--loop', loop,
                      '--timeout', str(server_timeout)]
        stdin = subprocess.PIPE
    else:
        server_cmd = [sys.executable, os.path.join(HERE, 'stream_server.py'), '--loop', loop,
                      '--kind', spec['kind'], '--conns', str(spec['conns']),
                      '--timeout', str(server_timeout)]
    server, port = start_server(server_cmd, cpu, stdin=stdin)
    try:
        cpu_before = cpu_seconds(server.pid)
        if spec['client'] == 'http' and cfg['http_client'] == 'wrk':
            rate, result = run_wrk(spec, port, cfg)
        else:
            result = run_client(stream_client_cmd(spec, port, cfg), cpu, server, 'stream client')
            if result['ops'] <= 0 or result['seconds'] <= 0:
                raise MeasurementFailed('nothing timed')
            rate = result['ops'] / result['seconds']
        cpu_used = cpu_seconds(server.pid) - cpu_before
        served = server_result(server, 'stream server')
        if 'loop' in served and served['loop'].split('.')[0] != loop:
            raise MeasurementFailed(f'requests ran on {served["loop"]}, not on {loop}')
        if spec['client'] == 'http':
            if 'bytes' in result:       # our C client: exact counts
                if served['requests'] != result['requests']:
                    raise MeasurementFailed(f'server answered {served["requests"]} requests, '
                                            f'client got {result["requests"]} responses')
            elif not (result['requests'] <= served['requests']
                      <= result['requests'] + spec['conns']):
                # wrk counts completed responses; at most one per connection
                # may have been in flight when it stopped.
                raise MeasurementFailed(f'server answered {served["requests"]} requests, '
                                        f'wrk completed {result["requests"]}')
        else:
            if served['bytes'] != result['bytes']:
                raise MeasurementFailed(f'server counted {served["bytes"]} bytes, client '
                                        f'{result["bytes"]}')
        if 'conns' in served and served['conns'] < spec['conns']:
            raise MeasurementFailed(f'server saw {served["conns"]} connections, expected '
                                    f'{spec["conns"]}')
        per_cpu = served['requests'] / cpu_used if spec['client'] == 'http' and cpu_used > 0 else None
        return rate, per_cpu
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def run_tls(loop, bench, cfg):
    """One TLS benchmark on one fresh tls_server.py."""
    spec = TLS[bench]
    cpu = cfg['cpu']
    cert, key = cfg['tls_cert']
    server_cmd = [sys.executable, os.path.join(HERE, 'tls_server.py'), '--loop', loop,
                  '--cert', cert, '--key', key, '--timeout', str(int(cfg['tls_seconds'] + 30))]
    # The server ends when its stdin closes (server_result closes it): only
    # the client knows how many connections it will make.
    server, port = start_server(server_cmd, cpu, stdin=subprocess.PIPE)
    try:
        client_cmd = [sys.executable, os.path.join(HERE, 'tls_client.py'), '--port', str(port),
                      '--cafile', cert, '--mode', spec['mode'], '--size', str(spec['size']),
                      '--seconds', str(cfg['tls_seconds']), '--max-count', str(TLS_MAX_COUNT),
                      '--warmup', str(spec['warmup'])]
        result = run_client(client_cmd, cpu, server, 'TLS client')
        served = server_result(server, 'TLS server')
        if served['bytes'] != result['bytes']:
            raise MeasurementFailed(f'server echoed {served["bytes"]} bytes, client sent and '
                                    f'received {result["bytes"]}')
        if served['conns'] != result['conns']:
            raise MeasurementFailed(f'server completed {served["conns"]} handshakes, client '
                                    f'made {result["conns"]} connections')
        if result['ops'] <= 0:
            raise MeasurementFailed('nothing timed')
        return result['ops'] / result['seconds']
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# -- the run -----------------------------------------------------------------------

def selects(word, bench):
    """--only matching: a name, a shell pattern, or a group -- a name's first
    words (tls selects tls_echo_1k, tls_echo_100k, tls_handshake)."""
    return fnmatch.fnmatchcase(bench, word) or bench.startswith(word + '_')


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, help=f'default {FULL["rounds"]} ({QUICK["rounds"]} with --quick)')
    p.add_argument('--quick', action='store_true', help='shorter measurements, fewer rounds (~2 min)')
    p.add_argument('--only', help='comma-separated benchmarks, shell patterns (e.g. '
                   '"proto_*,http") or groups (tls: every tls_* row): ' + ','.join(ALL_BENCHMARKS))
    p.add_argument('--loops', default=','.join(loops_mod.DEFAULT),
                   help=f'comma-separated, from {",".join(loops_mod.NAMES)} '
                        f'(default {",".join(loops_mod.DEFAULT)})')
    p.add_argument('--markdown', metavar='OUT.md', help='also write the table (and run details) here')
    p.add_argument('--cpu', type=int, help='the one CPU to run on (default: the highest allowed)')
    p.add_argument('--client', choices=('c', 'python'),
                   help='echo_1k/echo_100k load client (default: c if it builds, else python)')
    p.add_argument('--http-client', choices=('wrk', 'c'),
                   help='HTTP load generator (default: wrk if installed, else the C client)')
    args = p.parse_args(argv)

    args.benchmarks = ALL_BENCHMARKS
    if args.only:
        wanted = [b.strip() for b in args.only.split(',') if b.strip()]
        unknown = [w for w in wanted if not any(selects(w, b) for b in ALL_BENCHMARKS)]
        if unknown:
            p.error(f'unknown benchmark(s) {", ".join(unknown)}; choose from {", ".join(ALL_BENCHMARKS)}')
        args.benchmarks = [b for b in ALL_BENCHMARKS if any(selects(w, b) for w in wanted)]
    # A per-CPU row is measured by its source row's runs.
    sources = {PER_CPU[b] for b in args.benchmarks if b in PER_CPU}
    args.benchmarks = [b for b in ALL_BENCHMARKS if b in args.benchmarks or b in sources]
    args.loops = [name.strip() for name in args.loops.split(',') if name.strip()]
    unknown = [name for name in args.loops if name not in loops_mod.NAMES]
    if unknown:
        p.error(f'unknown loop(s) {", ".join(unknown)}; choose from {", ".join(loops_mod.NAMES)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.rounds:
        cfg['rounds'] = args.rounds
    allowed = os.sched_getaffinity(0)
    cfg['cpu'] = max(allowed) if args.cpu is None else args.cpu
    if cfg['cpu'] not in allowed:
        sys.exit(f'CPU {cfg["cpu"]} is not among the allowed CPUs {sorted(allowed)}')

    notes = []
    loops = []
    for name in args.loops:
        why = loops_mod.available(name)
        if why:
            print(f'NOTE: {name} is not importable ({why}); skipping it.', file=sys.stderr)
            notes.append(f'{name} skipped: not importable ({why}).')
        else:
            loops.append(name)
    if not loops:
        sys.exit('no loop to measure')
    if 'uvloop' not in loops and 'uvloop' in args.loops:
        notes.append('Ratios are to asyncio, since uvloop is missing.')

    outdir = results_dir()
    echo = [b for b in args.benchmarks if b in ECHO_SIZES]
    stream = [b for b in args.benchmarks if b in STREAM]
    tls = [b for b in args.benchmarks if b in TLS]
    if tls:
        cfg['tls_cert'], why = make_tls_cert(os.path.join(outdir, 'tls'))
        if why:
            print(f'NOTE: skipping {", ".join(tls)}: {why}', file=sys.stderr)
            notes.append(f'Skipped {", ".join(tls)}: {why.splitlines()[0]}')
            args.benchmarks = [b for b in args.benchmarks if b not in tls]
            tls = []
    cfg['client'] = args.client or 'python'
    built = None
    if echo or stream:
        # Per C library: a run in another root (e.g. the sid one for 3.14) builds its own.
        built, why = build_c(os.path.join(outdir, 'bin-' + ''.join(platform.libc_ver())))
        if built:
            cfg['c_server'], cfg['c_client'], cfg['c_stream'] = built
            cfg['client'] = args.client or 'c'
        else:
            print(f'NOTE: no C ceiling: {why}', file=sys.stderr)
            notes.append(f'No C ceiling: {why.splitlines()[0]}')
            if args.client == 'c':
                sys.exit('--client c needs the C client, which did not build')
    if 'http_uvicorn' in stream:
        missing = [m for m in ('uvicorn', 'httptools') if importlib.util.find_spec(m) is None]
        if missing:
            why = f'{" and ".join(missing)} not installed (they come with the bench extra)'
            print(f'NOTE: skipping http_uvicorn: {why}', file=sys.stderr)
            notes.append(f'Skipped http_uvicorn: {why}.')
            args.benchmarks = [b for b in args.benchmarks if b not in ('http_uvicorn', 'http_uvicorn_cpu')]
            stream = [b for b in stream if b != 'http_uvicorn']
    if any(STREAM[b]['client'] == 'http' for b in stream):
        wrk = shutil.which('wrk')
        cfg['http_client'] = args.http_client or ('wrk' if wrk else 'c')
        if cfg['http_client'] == 'wrk':
            if not wrk:
                sys.exit('--http-client wrk: wrk is not installed')
            cfg['wrk'] = wrk
        else:
            notes.append('HTTP load: the C keep-alive client (c_echo/stream_load.c http)'
                         + ('' if args.http_client else '; wrk is not installed') + '.')
    if stream and not built:
        # A Python load client would cost more CPU than the servers it measures.
        runnable = [b for b in stream if STREAM[b]['client'] == 'http' and cfg.get('http_client') == 'wrk']
        skipped = [b for b in stream if b not in runnable]
        if skipped:
            notes.append(f'Skipped {", ".join(skipped)}: they need the C load client.')
            print(f'NOTE: skipping {", ".join(skipped)}: no C load client', file=sys.stderr)
            args.benchmarks = [b for b in args.benchmarks if b not in skipped]
            stream = runnable
    ceilings = {b: b for b in echo if 'c_server' in cfg}
    ceilings.update({b: STREAM[b]['ceiling'] for b in stream
                     if 'ceiling' in STREAM[b] and 'c_server' in cfg})

    load_before = os.getloadavg()
    started = time.monotonic()
    results = {}        # (bench, loop) -> [rate, ...]
    failures = []       # (round, bench, loop, message)
    total = cfg['rounds'] * sum(len(loops) for b in args.benchmarks if b not in PER_CPU) \
        + cfg['rounds'] * len(set(ceilings[b] for b in args.benchmarks if b in ceilings))
    progress = Progress(total)
    for rnd in range(1, cfg['rounds'] + 1):
        ceilings_done = set()
        for bench in args.benchmarks:
            if bench in PER_CPU:        # measured with its source row
                continue
            # Each round starts from the next loop (A B C, B C A, ...): a run
            # leaves the machine a little different for the one after it
            # (a handshake run leaves thousands of TIME_WAIT sockets), and
            # no loop should always come last.
            shift = (rnd - 1) % len(loops)
            contenders = loops[shift:] + loops[:shift]
            ceiling = ceilings.get(bench)
            if ceiling and ceiling not in ceilings_done:   # shared by rows: once a round
                contenders.append(report.C_CEILING)
                ceilings_done.add(ceiling)
            for loop in contenders:     # A B C, A B C, ...: interleaved
                key = (ceiling, loop) if loop == report.C_CEILING else (bench, loop)
                try:
                    if bench in ECHO_SIZES:
                        rate = run_echo(loop, ECHO_SIZES[bench], cfg)
                    elif bench in STREAM:
                        rate, per_cpu = run_stream(loop, bench, cfg)
                        for derived, source in PER_CPU.items():
                            if source == bench and derived in args.benchmarks and per_cpu:
                                results.setdefault((derived, loop), []).append(per_cpu)
                    elif bench in TLS:
                        rate = run_tls(loop, bench, cfg)
                    else:
                        rate = run_micro(loop, bench, cfg)
                except MeasurementFailed as exc:
                    failures.append((rnd, key[0], loop, str(exc)))
                    progress.say(f'round {rnd}: {key[0]} on {loop} FAILED: {exc}')
                    progress.step(f'round {rnd}/{cfg["rounds"]}')
                    continue
                results.setdefault(key, []).append(rate)
                progress.step(f'round {rnd}/{cfg["rounds"]}')
    progress.done()
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    failed = {(b, l) for _, b, l, _ in failures}
    labels = dict(LABELS)
    if 'http' in stream:
        labels['http'] = labels['http'].replace(
            ' (', ', wrk (' if cfg['http_client'] == 'wrk' else ', C client (')
    md_table = report.table(args.benchmarks, labels, loops, results, failed, ceilings)
    md_summary = report.summary(args.benchmarks, loops, results)
    versions = {name: _version(name) for name in loops}
    details = [
        f'{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, '
        + ', '.join(f'{k} {v}' for k, v in versions.items() if v),
        f'{cfg["rounds"]} rounds, medians (± half the min..max range); every process pinned to '
        f'CPU {cfg["cpu"]}' + (f'; echo client: {cfg["client"]}, SCHED_BATCH' if echo else '')
        + ('; stream rows: C load client c_echo/stream_load.c'
           + (' and wrk' if cfg.get('http_client') == 'wrk' else '') + ', SCHED_BATCH'
           if stream else '')
        + ('; TLS rows: Python client tls_client.py, SCHED_BATCH' if tls else '')
        + f'; {elapsed:.0f} s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.',
        '(noise): the rounds of the two loops spread wider than the difference their medians show.',
    ] + (['C ceiling: a plain C epoll echo server (one read and one write per message) measured '
          'with the same client; over 100% means ferroloop served more than it, which its '
          'batching of reads and writes under load allows: a reference point, not a bound.']
         if ceilings else []) + notes
    text = (md_table + '\n\n' + (f'**Summary**: {md_summary}.\n\n' if md_summary else '')
            + '\n'.join(f'- {d}' for d in details) + '\n')
    print()
    print(text)
    if failures:
        print(f'{len(failures)} measurement(s) FAILED:')
        for rnd, bench, loop, msg in failures:
            print(f'  round {rnd} {bench} {loop}: {msg}')

    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    raw = os.path.join(outdir, f'run-{stamp}.json')
    with open(raw, 'w') as f:
        json.dump({'config': {k: v for k, v in cfg.items()}, 'versions': versions,
                   'samples': {f'{b}/{l}': v for (b, l), v in results.items()},
                   'failures': failures, 'elapsed': elapsed,
                   'loadavg': [load_before, load_after]}, f, indent=1)
    print(f'raw samples: {raw}')
    png = raw[:-len('.json')] + '.png'
    try:
        report.chart(png, args.benchmarks, labels, loops, results)
        print(f'chart: {png}')
    except ImportError:
        print('no chart: matplotlib is not installed (it comes with the bench extra)')
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(text)
            if failures:
                f.write('\nFailures:\n\n' + ''.join(
                    f'- round {r} {b} {l}: {m.splitlines()[0]}\n' for r, b, l, m in failures))
        print(f'table written to {args.markdown}')
    return 1 if failures else 0


def _version(name):
    if name == 'asyncio':
        return None     # the Python version says it
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == '__main__':
    sys.exit(main())
