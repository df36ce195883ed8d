"""Runs every program in examples/ as its own process and checks what it did.

Each example is started with this interpreter (so it imports the ferroloop
under test), must exit by itself, and its printed lines are checked for real
outcomes: bytes echoed back, ticks counted, checksums, timing bounds.
"""

import hashlib
import os
import random
import re
import socket
import subprocess
import threading
import time

import pytest
from example_runner import TIMEOUT, command, finish, read_listening_port, start_example

def run_example(name, *args, timeout=TIMEOUT):
    proc = subprocess.run(command(name, *args), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f'{name} exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}')
    return proc.stdout.splitlines()


def recv_exactly(sock, n):
    data = b''
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f'connection closed after {len(data)} of {n} bytes'
        data += chunk
    return data


# -- (b) call_soon + stop ------------------------------------------------------

def test_hello_world_runs_call_soon_callbacks_in_order_then_stops():
    lines = run_example('hello_world.py')
    assert lines == [
        'run_forever: start',
        'Hello World',
        # Queued before stop() ran: still runs in the same iteration.
        'Goodbye World',
        'run_forever: returned after 2 callbacks',
        'loop closed: True',
    ]


def test_hello_world_passes_callback_arguments():
    lines = run_example('hello_world.py', '--name', 'ferroloop')
    assert lines[1:3] == ['Hello ferroloop', 'Goodbye ferroloop']


# -- (c) periodic timer ----------------------------------------------------------

TICK_LINE = re.compile(r'tick (\d+) at \+(\d+\.\d+)s')


@pytest.mark.parametrize('style', ['callback', 'task'])
def test_periodic_timer_runs_exactly_n_ticks_spaced_by_the_interval(style):
    ticks, interval = 6, 0.05
    lines = run_example('periodic_timer.py', '--style', style, '--ticks', ticks,
                        '--interval', interval)
    assert len(lines) == ticks + 1, lines
    matches = [TICK_LINE.fullmatch(line) for line in lines[:-1]]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == list(range(1, ticks + 1))
    times = [float(m.group(2)) for m in matches]
    assert times == sorted(times)
    # Tick k is due at (k-1)*interval on a fixed grid; timers never fire
    # noticeably early (a clock-resolution slack of 5 ms is allowed).
    for k, t in enumerate(times):
        assert t >= k * interval - 0.005, (k + 1, t)
    done = re.fullmatch(r'done: (\d+) ticks in (\d+\.\d+)s', lines[-1])
    assert done, lines[-1]
    assert int(done.group(1)) == ticks
    elapsed = float(done.group(2))
    assert (ticks - 1) * interval - 0.005 <= elapsed < (ticks - 1) * interval + 2.0


def test_periodic_timer_single_tick_stops_at_once():
    lines = run_example('periodic_timer.py', '--ticks', 1, '--interval', 5)
    assert len(lines) == 2
    assert TICK_LINE.fullmatch(lines[0]).group(1) == '1'
    assert float(re.fullmatch(r'done: 1 ticks in (\d+\.\d+)s', lines[1]).group(1)) < 1.0


# -- (e) gather of sleeping tasks --------------------------------------------------

def test_gather_sleep_runs_tasks_concurrently_total_close_to_longest_not_sum():
    delays = [0.6, 0.3, 0.5, 0.2, 0.4]
    started = time.monotonic()
    lines = run_example('gather_sleep.py', '--delays', *delays)
    wall = time.monotonic() - started
    summary = re.fullmatch(r'total (\d+\.\d+)s; longest (\d+\.\d+)s; sum (\d+\.\d+)s',
                           lines[-1])
    assert summary, lines
    total, longest, total_sum = map(float, summary.groups())
    assert longest == 0.6 and total_sum == 2.0
    assert total >= longest - 0.005
    # Sequential sleeps would take 2.0 s; concurrent ones about 0.6 s.
    assert total < 1.3, f'total {total}s: the sleeps did not overlap'
    assert wall < total_sum + 10  # the process itself ended promptly too


def test_gather_sleep_tasks_finish_shortest_first_and_results_keep_argument_order():
    delays = [0.4, 0.1, 0.3, 0.2]
    lines = run_example('gather_sleep.py', '--delays', *delays)
    done = [re.fullmatch(r'task (\w) slept (\d+\.\d+)s, done at \+(\d+\.\d+)s', line)
            for line in lines[:len(delays)]]
    assert all(done), lines
    assert [m.group(1) for m in done] == ['b', 'd', 'c', 'a']
    for m in done:
        slept, at = float(m.group(2)), float(m.group(3))
        assert slept - 0.005 <= at < slept + 0.5
    assert lines[len(delays)] == 'gather results: a b c d'


# -- (d) 8 MiB through add_writer beside a busy callback ---------------------------

def parse_busy_writer(lines):
    sent = re.fullmatch(r'sent (\d+) bytes sha256 ([0-9a-f]{64})', lines[0])
    received = re.fullmatch(r'received (\d+) bytes sha256 ([0-9a-f]{64})', lines[1])
    counts = re.fullmatch(r'busy callback ran (\d+) times; write callback (\d+) times; '
                          r'read callback (\d+) times', lines[2])
    alternated = re.fullmatch(r'busy and I/O callbacks alternated (\d+) times', lines[3])
    assert sent and received and counts and alternated, lines
    return (int(sent.group(1)), sent.group(2), int(received.group(1)), received.group(2),
            *map(int, counts.groups()), int(alternated.group(1)), lines[4])


@pytest.mark.parametrize('transport', ['socketpair', 'pipe'])
def test_busy_writer_delivers_8_mib_intact(transport):
    size = 8 * 1024 * 1024
    lines = run_example('busy_writer.py', '--transport', transport)
    sent_n, sent_sha, recv_n, recv_sha, *_, verdict = parse_busy_writer(lines)
    # The checksum of the data as this test makes it itself.
    expected = hashlib.sha256(random.Random(3156).randbytes(size)).hexdigest()
    assert sent_n == recv_n == size
    assert sent_sha == recv_sha == expected
    assert verdict == 'OK'


@pytest.mark.parametrize('transport', ['socketpair', 'pipe'])
def test_busy_writer_busy_callback_keeps_running_interleaved_with_io(transport):
    lines = run_example('busy_writer.py', '--transport', transport)
    *_, busy, writes, reads, alternations, verdict = parse_busy_writer(lines)
    assert verdict == 'OK'
    # 8 MiB cannot fit in a socket or pipe buffer: the writer must have been
    # called back many times, and the busy callback ran between those calls
    # instead of starving them (or being starved).
    assert writes >= 8, writes
    assert reads >= 8, reads
    assert busy >= writes // 2, (busy, writes)
    assert alternations >= 2 * min(busy, writes) - 2, (alternations, busy, writes)


# -- (a) echo server on sock_accept / sock_recv / sock_sendall ----------------------

def test_echo_server_echoes_bytes_to_outside_clients_and_exits_after_them():
    proc = start_example('echo_server.py', '--clients', 2)
    try:
        port = read_listening_port(proc)
        big = os.urandom(1024 * 1024)
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as first, \
                socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as second:
            # Both connected at once: one thread in the server serves both.
            second.sendall(b'second says hi')
            assert recv_exactly(second, 14) == b'second says hi'
            first.sendall(b'first!')
            assert recv_exactly(first, 6) == b'first!'
            # A megabyte, echoed while we are still sending it.
            echoed = {}
            reader = threading.Thread(
                target=lambda: echoed.setdefault('data', recv_exactly(first, len(big))))
            reader.start()
            first.sendall(big)
            reader.join(TIMEOUT)
            assert echoed.get('data') == big
            first.shutdown(socket.SHUT_WR)
            assert first.recv(1) == b''  # the server closed its side after our EOF
            second.shutdown(socket.SHUT_WR)
            assert second.recv(1) == b''
    except BaseException:
        proc.kill()
        raise
    lines = finish(proc)
    assert sum(line.startswith('client connected: ') for line in lines) == 2
    disconnected = sorted(int(m.group(1)) for m in
                          (re.fullmatch(r"client disconnected: \('127\.0\.0\.1', \d+\) "
                                        r"\((\d+) bytes echoed\)", line) for line in lines)
                          if m)
    assert disconnected == [14, 6 + len(big)]
    assert lines[-1] == f'served 2 clients, {20 + len(big)} bytes echoed'


def test_echo_server_listens_on_the_port_given_on_the_command_line():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    proc = start_example('echo_server.py', '--port', port, '--clients', 1)
    try:
        assert read_listening_port(proc) == port
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as client:
            client.sendall(b'ping\n')
            assert recv_exactly(client, 5) == b'ping\n'
    except BaseException:
        proc.kill()
        raise
    lines = finish(proc)
    assert lines[-1] == 'served 1 clients, 5 bytes echoed'


def test_echo_server_demo_clients_in_the_same_loop_get_their_bytes_back():
    lines = run_example('echo_server.py', '--demo', 3)
    assert re.fullmatch(r'listening on 127\.0\.0\.1:\d+', lines[0])
    ok = [re.fullmatch(r'demo client (\d): echoed (\d+) bytes OK', line) for line in lines]
    ok = [m for m in ok if m]
    assert sorted(int(m.group(1)) for m in ok) == [1, 2, 3]
    sizes = [int(m.group(2)) for m in ok]
    assert all(size > 256 * 1024 for size in sizes)
    assert lines[-1] == f'served 3 clients, {sum(sizes)} bytes echoed'
