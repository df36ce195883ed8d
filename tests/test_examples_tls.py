"""Runs the TLS examples (HTTPS GET, STARTTLS upgrade) as processes.

Each example runs on ferroloop in its own process and must exit by itself.
The peers on the other side are the standard library's own TLS (``ssl``
sockets in a thread of this test), so both examples are checked against an
independent implementation, with certificate verification on: a
self-signed EC certificate for localhost / 127.0.0.1 made here with the
openssl command. Loopback only.
"""

import http.server
import re
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from test_examples_streams import (BIG_BODY, TIMEOUT, Handler, finish, read_listening_port,
                                   run_example, start_example)

pytestmark = pytest.mark.skipif(shutil.which('openssl') is None,
                                reason='needs the openssl command to make a certificate')


@pytest.fixture(scope='module')
def cert(tmp_path_factory):
    """(certificate, key) paths: self-signed, so the certificate is its own CA file."""
    d = tmp_path_factory.mktemp('tls')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec',
                    '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
                    '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                    '-keyout', d / 'key.pem', '-out', d / 'cert.pem'],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return d / 'cert.pem', d / 'key.pem'


def server_context(cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


def serve_in_thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# -- https_get.py --------------------------------------------------------------------------

@pytest.fixture
def https_server(cert):
    """test_examples_streams's HTTP handler behind the stdlib's TLS; yields the base URL."""
    Handler.requests = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    # Handshakes happen in accept(); one that fails (the client rejects the
    # certificate) is an OSError, which socketserver drops.
    server.socket = server_context(cert).wrap_socket(server.socket, server_side=True)
    thread = serve_in_thread(lambda: server.serve_forever(poll_interval=0.05))
    try:
        yield f'https://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


TLS_LINE = re.compile(r'TLS: TLSv1\.[23], \S+, certificate for localhost verified')


def test_https_get_verifies_the_certificate_and_prints_the_body(https_server, cert):
    proc = run_example('https_get.py', '--cafile', cert[0], https_server + '/hello')
    assert proc.stdout == b'Hello, ferroloop!\n'
    tls, get = proc.stderr.decode().splitlines()
    assert TLS_LINE.fullmatch(tls), tls
    assert get == f'GET {https_server}/hello -> HTTP/1.1 200 OK, 18 bytes'
    assert [(path, conn) for _, path, conn in Handler.requests] == [('/hello', 'close')]


def test_https_get_checks_the_servername_and_reads_a_body_of_many_records(https_server, cert):
    # The certificate names localhost too: SNI and the name check use it,
    # while the connection goes to the URL's 127.0.0.1.
    proc = run_example('https_get.py', '--cafile', cert[0], '--servername', 'localhost',
                       https_server + '/big')
    assert proc.stdout == BIG_BODY       # 300 KiB: some twenty 16 KiB TLS records
    assert proc.stderr.decode().splitlines()[-1] == (
        f'GET {https_server}/big -> HTTP/1.1 200 OK, {len(BIG_BODY)} bytes')


@pytest.mark.parametrize('args, why', [
    ((), 'self-signed certificate'),       # the system's CAs do not know it
    (('--servername', 'example.org'), "Hostname mismatch, certificate is not valid for 'example.org'"),
])
def test_https_get_refuses_a_certificate_that_does_not_verify(https_server, cert, args, why):
    if args:
        args = ('--cafile', cert[0], *args)
    proc = run_example('https_get.py', *args, https_server + '/hello', expect_status=1)
    assert proc.stdout == b''
    assert 'CERTIFICATE_VERIFY_FAILED' in proc.stderr.decode()
    assert why in proc.stderr.decode()
    assert Handler.requests == []         # nothing was sent to an unverified server


# -- starttls_upgrade.py -------------------------------------------------------------------

def recv_line(sock):
    """One line of the plain-text part, byte by byte: nothing past it may be
    consumed, since what follows belongs to TLS."""
    line = b''
    while not line.endswith(b'\n'):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


LONG_LINE = '0123456789abcdef' * 2500      # 40,000 bytes: spans three TLS records

def test_starttls_demo_upgrades_both_ends_and_echoes_over_tls(cert):
    says = ['hello', 'two words', LONG_LINE]
    proc = run_example('starttls_upgrade.py', 'demo', '--cert', cert[0], '--key', cert[1],
                       *[a for text in says for a in ('--say', text)])
    lines = proc.stdout.decode().splitlines()
    assert re.fullmatch(r'listening on 127\.0\.0\.1:\d+', lines[0])
    upgraded = [l for l in lines if ' upgraded to ' in l]
    assert len(upgraded) == 2
    assert all(re.fullmatch(r'(client:|server: 127\.0\.0\.1:\d+) upgraded to TLSv1\.[23] \S+', l)
               for l in upgraded), upgraded
    assert [l for l in lines if l.startswith('client: echo: ')] == [
        f'client: echo: {text}' for text in says]
    assert 'client: bye' in lines
    assert any(re.fullmatch(r'server: 127\.0\.0\.1:\d+ left, 3 lines echoed over TLS', l)
               for l in lines)
    assert lines[-1] == 'served 1 clients'


def test_starttls_server_upgrades_for_a_stdlib_client_and_refuses_plain_text(cert):
    server = start_example('starttls_upgrade.py', 'server', '--cert', cert[0], '--key', cert[1],
                           '--clients', 2)
    try:
        port = read_listening_port(server)
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as plain:
            assert recv_line(plain) == b'220 ready, say STARTTLS\n'
            plain.sendall(b'HELO me\n')
            assert recv_line(plain) == b'530 STARTTLS first\n'
            assert plain.recv(1) == b''         # and the server hung up

        ctx = ssl.create_default_context(cafile=cert[0])
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as raw:
            assert recv_line(raw) == b'220 ready, say STARTTLS\n'
            raw.sendall(b'STARTTLS\n')
            assert recv_line(raw) == b'220 go ahead\n'
            with ctx.wrap_socket(raw, server_hostname='localhost') as tls:
                assert tls.version() in ('TLSv1.2', 'TLSv1.3')
                replies = tls.makefile('rb')
                for line in (b'over tls\n', LONG_LINE.encode() + b'\n'):
                    tls.sendall(line)
                    assert replies.readline() == b'echo: ' + line
                tls.sendall(b'QUIT\n')
                assert replies.readline() == b'bye\n'
                assert replies.read() == b''
                replies.close()
        lines = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    # (The "listening on" line was read above.)
    assert re.fullmatch(r'server: 127\.0\.0\.1:\d+ did not ask for STARTTLS', lines[0])
    assert re.fullmatch(r'server: 127\.0\.0\.1:\d+ upgraded to TLSv1\.[23] \S+', lines[1])
    assert re.fullmatch(r'server: 127\.0\.0\.1:\d+ left, 2 lines echoed over TLS', lines[2])
    assert lines[3:] == ['served 2 clients']


def stdlib_starttls_server(listener, cert, answer, seen):
    """The other side of the conversation for one client, on blocking sockets."""
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        conn.sendall(b'220 ready, say STARTTLS\n')
        seen.append(recv_line(conn))
        conn.sendall(answer)
        if not answer.startswith(b'220 '):
            return
        with server_context(cert).wrap_socket(conn, server_side=True) as tls:
            seen.append(tls.version())
            for line in tls.makefile('rb'):
                seen.append(line)
                tls.sendall(b'bye\n' if line == b'QUIT\n' else b'echo: ' + line)


@pytest.mark.parametrize('answer', [b'220 go ahead\n', b'454 TLS not available now\n'])
def test_starttls_client_upgrades_against_a_stdlib_server_or_stops_when_refused(cert, answer):
    seen = []
    with socket.create_server(('127.0.0.1', 0)) as listener:
        listener.settimeout(TIMEOUT)
        thread = serve_in_thread(stdlib_starttls_server, listener, cert, answer, seen)
        port = listener.getsockname()[1]
        refused = not answer.startswith(b'220 ')
        proc = run_example('starttls_upgrade.py', 'client', '--port', port, '--cafile', cert[0],
                           '--say', 'one', '--say', 'two', expect_status=1 if refused else 0)
        thread.join(TIMEOUT)
    lines = proc.stdout.decode().splitlines()
    if refused:
        assert seen == [b'STARTTLS\n']
        assert lines == []
        assert proc.stderr.decode() == (
            "starttls_upgrade: Refused: expected '220 ', the server said '454 TLS not available now'\n")
        return
    assert seen[0] == b'STARTTLS\n'
    assert seen[1] in ('TLSv1.2', 'TLSv1.3')
    assert seen[2:] == [b'one\n', b'two\n', b'QUIT\n']
    assert re.fullmatch(r'client: upgraded to TLSv1\.[23] \S+', lines[0])
    assert lines[1:] == ['client: echo: one', 'client: echo: two', 'client: bye']
