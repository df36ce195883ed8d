"""Runs the stream examples (Protocol echo, streams echo, chat, HTTP GET) as processes.

Every example runs on ferroloop in its own process, must exit by itself, and
is checked for real outcomes: the bytes and lines that came back, who got
which chat message, the HTTP status and body. The peers are plain blocking
sockets in this test, other example processes, or (for the HTTP client) a
small ``http.server`` in a thread of this test. Loopback only.
"""

import hashlib
import http.server
import os
import re
import socket
import subprocess
import threading

import pytest

import example_runner
from example_runner import TIMEOUT, command, read_listening_port, start_example

def run_example(name, *args, expect_status=0):
    proc = subprocess.run(command(name, *args), capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == expect_status, (
        f'{name} exited with {proc.returncode}\nstdout:\n{proc.stdout.decode(errors="replace")}'
        f'\nstderr:\n{proc.stderr.decode(errors="replace")}')
    return proc


def finish(proc):
    # These examples must also exit without a traceback on stderr.
    return example_runner.finish(proc, no_traceback=True)


def recv_until_eof(sock):
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def send_and_collect(sock, payload):
    """Sends payload (then FIN) from a thread while reading everything back until EOF."""
    def sender():
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
    thread = threading.Thread(target=sender)
    thread.start()
    try:
        return recv_until_eof(sock)
    finally:
        thread.join(TIMEOUT)


# -- Protocol echo server ------------------------------------------------------------

def test_protocol_echo_server_echoes_outside_clients_byte_for_byte_and_exits():
    proc = start_example('protocol_echo_server.py', '--clients', 2)
    try:
        port = read_listening_port(proc)
        small = b'hello, protocol\n'
        big = os.urandom(3 * 1024 * 1024 + 17)   # far more than a socket buffer
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as a, \
                socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as b:
            # Both connected at once; both are served by the one loop.
            a.sendall(small)
            assert a.recv(len(small), socket.MSG_WAITALL) == small
            echoed_big = send_and_collect(b, big)
            echoed_rest = send_and_collect(a, b'bye')
        assert echoed_big == big
        assert echoed_rest == b'bye'
        lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    connected = [l for l in lines if l.startswith('client connected: ')]
    disconnected = sorted(int(re.search(r'\((\d+) bytes echoed\)$', l).group(1))
                          for l in lines if l.startswith('client disconnected: '))
    assert len(connected) == 2
    assert disconnected == sorted([len(small) + 3, len(big)])
    assert lines[-1] == f'served 2 clients, {len(small) + 3 + len(big)} bytes echoed'


def test_protocol_echo_server_demo_clients_get_their_payload_back():
    lines = run_example('protocol_echo_server.py', '--demo', 3).stdout.decode().splitlines()
    payload_sizes = {k: len(f'hello from demo client {k}\n') + 256 * 1024 for k in (1, 2, 3)}
    for k, size in payload_sizes.items():
        assert f'demo client {k}: echoed {size} bytes OK' in lines, lines
    assert sum(l.startswith('client disconnected: ') for l in lines) == 3
    assert lines[-1] == f'served 3 clients, {sum(payload_sizes.values())} bytes echoed'


# -- streams echo server (readline) ----------------------------------------------------

def test_streams_echo_server_echoes_lines_in_order_and_a_final_partial_line():
    proc = start_example('streams_echo_server.py', '--clients', 2)
    try:
        port = read_listening_port(proc)
        lines_a = [f'line {i} '.encode() + b'a' * (i * 131 % 2000) + b'\n' for i in range(200)]
        lines_b = [b'first\n', b'\n', b'third, then no newline at the end']
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as a, \
                socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as b:
            # One line at a time on a: each comes back before the next is sent.
            fa = a.makefile('rb')
            for line in lines_a[:10]:
                a.sendall(line)
                assert fa.readline() == line
            # The rest of a in one burst, b all at once with a partial last line.
            rest_a = send_and_collect(a, b''.join(lines_a[10:]))
            echoed_b = send_and_collect(b, b''.join(lines_b))
            fa.close()
        assert rest_a == b''.join(lines_a[10:])
        assert echoed_b.splitlines(keepends=True) == lines_b
        lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    counts = sorted(int(re.search(r'\((\d+) lines echoed\)$', l).group(1))
                    for l in lines if l.startswith('client disconnected: '))
    assert counts == [len(lines_b), len(lines_a)]
    assert lines[-1] == f'served 2 clients, {len(lines_a) + len(lines_b)} lines echoed'


def test_streams_echo_server_demo_clients_read_each_line_back_in_order():
    lines = run_example('streams_echo_server.py', '--demo', 3).stdout.decode().splitlines()
    for k in (1, 2, 3):
        assert f'demo client {k}: 50 lines echoed in order OK' in lines, lines
    assert lines[-1] == 'served 3 clients, 150 lines echoed'


# -- chat server and client (length-prefixed frames) ------------------------------------

def test_chat_relays_each_message_to_every_other_client_and_not_the_sender():
    server = start_example('chat_server.py', '--clients', 3)
    clients = {}
    try:
        port = read_listening_port(server)
        names = ['alice', 'bob', 'carol']
        said = {n: [f'hello from {n}', f'{n} says: ünïcode ✓', f'bye from {n}'] for n in names}
        for n in names:
            args = ['--port', port, '--name', n, '--wait-for', 3, '--expect', 6, '--timeout', 30]
            for text in said[n]:
                args += ['--say', text]
            clients[n] = start_example('chat_client.py', *args)
        outputs = {n: finish(p) for n, p in clients.items()}
        server_lines = finish(server)
    finally:
        for p in [server, *clients.values()]:
            if p.poll() is None:
                p.kill()
                p.communicate()

    for n, lines in outputs.items():
        assert lines[-1] == f'{n}: received 6 messages from others', lines
        chat = [l for l in lines[:-1] if not l.startswith(('* ', '-- '))]
        # Exactly the other clients' messages, each sender's in its order.
        for other in names:
            from_other = [l for l in chat if l.startswith(f'{other}: ')]
            expected = [] if other == n else [f'{other}: {t}' for t in said[other]]
            assert from_other == expected, (n, other, lines)
        assert len(chat) == 6, lines
        assert lines[0].startswith(f'* welcome {n} ('), lines
    # Every client joined and left cleanly (each half-closes, then reads to EOF:
    # no reset, no error reported by the server).
    for n in names:
        assert sum(bool(re.fullmatch(rf'{n} joined \([123] online\)', l)) for l in server_lines) == 1
        assert sum(bool(re.fullmatch(rf'{n} left \([012] online\)', l)) for l in server_lines) == 1
    assert not [l for l in server_lines if 'Error' in l], server_lines
    relayed = [l for l in server_lines if re.fullmatch(r'(alice|bob|carol): .*', l)]
    assert sorted(relayed) == sorted(f'{n}: {t}' for n in names for t in said[n])
    assert server_lines[-1] == 'served 3 clients, 9 messages relayed'


def test_chat_server_survives_a_client_that_disconnects_mid_frame():
    server = start_example('chat_server.py', '--clients', 2)
    try:
        port = read_listening_port(server)
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as s:
            s.sendall(b'\x00\x00\x00\x05eve')          # a nickname frame cut short
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as s:
            name = b'dave'
            s.sendall(len(name).to_bytes(4, 'big') + name)
            head = s.recv(4, socket.MSG_WAITALL)
            welcome = s.recv(int.from_bytes(head, 'big'), socket.MSG_WAITALL)
            assert welcome == b'* welcome dave (1 online)'
            msg = b'x' * 1000
            s.sendall(len(msg).to_bytes(4, 'big') + msg[:500])   # then leave mid-frame
        lines = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert 'dave joined (1 online)' in lines
    assert 'dave left (0 online)' in lines
    assert lines[-1] == 'served 2 clients, 0 messages relayed'


# -- HTTP/1.1 GET client -------------------------------------------------------------------

BIG_BODY = bytes(range(256)) * 1200       # 300 KiB, more than one read


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'         # keep-alive unless the client says close
    requests = []                          # (client address, path, Connection header)

    def log_message(self, *args):
        pass

    def send_body(self, code, body, content_type='text/plain; charset=utf-8'):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Handler.requests.append((self.client_address, self.path, self.headers.get('Connection')))
        if self.path == '/hello':
            self.send_body(200, b'Hello, ferroloop!\n')
        elif self.path == '/big':
            self.send_body(200, BIG_BODY, 'application/octet-stream')
        elif self.path == '/chunked':
            self.send_response(200)
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            for part in (b'first part, ', b'second part, ', b'x' * 5000):
                self.wfile.write(b'%x\r\n%s\r\n' % (len(part), part))
            self.wfile.write(b'0\r\n\r\n')
        elif self.path == '/query?a=1&b=two':
            self.send_body(200, self.path.encode())
        else:
            self.send_body(404, b'no such page\n')


@pytest.fixture
def http_server():
    Handler.requests = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05})
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def test_http_get_prints_status_headers_and_body(http_server):
    proc = run_example('http_get.py', '-i', http_server + '/hello')
    head, _, body = proc.stdout.partition(b'\r\n\r\n')
    head_lines = head.decode('latin-1').split('\r\n')
    assert head_lines[0] == 'HTTP/1.1 200 OK'
    headers = dict(line.split(': ', 1) for line in head_lines[1:])
    assert headers['Content-Length'] == str(len(b'Hello, ferroloop!\n'))
    assert headers['Content-Type'] == 'text/plain; charset=utf-8'
    assert body == b'Hello, ferroloop!\n'
    assert proc.stderr.decode().strip() == (
        f'GET {http_server}/hello -> 200 OK, 18 bytes, connection 1')


def test_http_get_reads_bodies_by_length_and_chunked_over_one_keep_alive_connection(http_server):
    proc = run_example('http_get.py', http_server + '/big', '/chunked', '/query?a=1&b=two',
                       '/hello')
    expected_chunked = b'first part, second part, ' + b'x' * 5000
    assert proc.stdout == BIG_BODY + expected_chunked + b'/query?a=1&b=two' + b'Hello, ferroloop!\n'
    summaries = proc.stderr.decode().splitlines()
    assert summaries == [
        f'GET {http_server}/big -> 200 OK, {len(BIG_BODY)} bytes, connection 1',
        f'GET {http_server}/chunked -> 200 OK, {len(expected_chunked)} bytes, connection 1',
        f'GET {http_server}/query?a=1&b=two -> 200 OK, 16 bytes, connection 1',
        f'GET {http_server}/hello -> 200 OK, 18 bytes, connection 1',
    ]
    # The server saw all four requests on one connection, the last asking to close.
    assert [path for _, path, _ in Handler.requests] == ['/big', '/chunked', '/query?a=1&b=two',
                                                          '/hello']
    assert len({addr for addr, _, _ in Handler.requests}) == 1
    assert [c for _, _, c in Handler.requests] == ['keep-alive'] * 3 + ['close']
    assert hashlib.sha256(proc.stdout[:len(BIG_BODY)]).digest() == hashlib.sha256(BIG_BODY).digest()


def test_http_get_reports_404_and_fails_with_fail(http_server):
    proc = run_example('http_get.py', '-i', http_server + '/missing')
    assert proc.stdout.startswith(b'HTTP/1.1 404 Not Found\r\n')
    assert proc.stdout.endswith(b'\r\n\r\nno such page\n')
    run_example('http_get.py', '--fail', http_server + '/missing', expect_status=22)


def test_http_get_fails_cleanly_when_nothing_listens():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]      # bound but not listening: connections are refused
        proc = run_example('http_get.py', f'http://127.0.0.1:{port}/', expect_status=1)
    assert b'ConnectionRefusedError' in proc.stderr
    assert proc.stdout == b''
