"""Runs the datagram and pipe examples (UDP echo, piping through cat) as processes.

Every example runs on ferroloop in its own process, must exit by itself, and
is checked for real outcomes: datagrams echoed back byte for byte (to this
test's own UDP socket, or between two example processes), the checksum of
10 MiB that went through ``cat``. Loopback only.
"""

import hashlib
import random
import re
import socket
import subprocess

import pytest
from example_runner import TIMEOUT, command, finish, read_listening_port, start_example

def run_example(name, *args, expect_status=0):
    proc = subprocess.run(command(name, *args), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == expect_status, (
        f'{name} exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}')
    return proc.stdout.splitlines()


# -- udp_echo.py ----------------------------------------------------------------------

def test_udp_echo_server_answers_a_plain_socket_then_exits():
    server = start_example('udp_echo.py', 'server', '--count', 20)
    try:
        port = read_listening_port(server)
        total = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for i in range(20):
                payload = bytes([i]) * (i * 61 + 1)
                sock.sendto(payload, ('127.0.0.1', port))
                data, addr = sock.recvfrom(65536)
                assert data == payload and addr == ('127.0.0.1', port)
                total += len(payload)
        lines = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert lines[-1] == f'echoed 20 datagrams ({total} bytes)'


def test_udp_echo_client_and_server_processes():
    server = start_example('udp_echo.py', 'server', '--count', 50)
    try:
        port = read_listening_port(server)
        client_lines = run_example('udp_echo.py', 'client', '--port', port, '--count', 50)
        assert client_lines == ['client: 50/50 echoes OK']
        server_lines = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    expected_bytes = sum(len(b'%d:' % i) + i * 37 % 1400 for i in range(50))
    assert server_lines[-1] == f'echoed 50 datagrams ({expected_bytes} bytes)'


def test_udp_echo_demo_in_one_loop():
    lines = run_example('udp_echo.py', 'demo', '--count', 200)
    assert lines[0].startswith('listening on 127.0.0.1:')
    assert 'client: 200/200 echoes OK' in lines
    assert lines[-1].startswith('echoed 200 datagrams (')


def test_udp_echo_client_without_a_server_reports_port_unreachable():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    # Nothing listens there now: the ICMP error reaches error_received.
    proc = subprocess.run(command('udp_echo.py', 'client', '--port', port, '--count', 1),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert 'port unreachable' in proc.stderr


# -- pipe_through_cat.py -----------------------------------------------------------------

@pytest.mark.parametrize('style', ['streams', 'protocol'])
def test_ten_mebibytes_through_cat(style):
    lines = run_example('pipe_through_cat.py', '--style', style, '--seed', 7)
    expected = hashlib.sha256(random.Random(7).randbytes(10 * 1024 * 1024)).hexdigest()
    assert lines[0] == f'sent 10485760 bytes sha256={expected}'
    assert lines[1] == f'received 10485760 bytes sha256={expected}'
    assert lines[2] == 'cat exited with 0'
    assert re.fullmatch(r'\d+ MB/s', lines[3])
    assert lines[4] == 'OK'
