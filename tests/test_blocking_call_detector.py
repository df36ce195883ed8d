"""Under a blocking-call detector (blockbuster, which anyio's and other
libraries' test suites switch on), what passes on asyncio passes on
ferroloop: the blocking calls asyncio makes from its own files (spawning a
child reads its exec-error pipe, a Unix server stats and unlinks its socket
path, sock_sendfile calls sendfile) are made where the detector does not
count them against the program -- natively, or off the loop's thread."""

import asyncio
import os
import socket
import sys

import pytest

from support import run

blockbuster = pytest.importorskip('blockbuster')


@pytest.fixture
def detector():
    # Every module counts as the program's, so any flagged call fails.
    with blockbuster.blockbuster_ctx() as bb:
        yield bb


def test_spawning_a_child_is_not_a_blocking_call(loop, detector):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, '-c', 'print("hi")', stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return out, proc.returncode

    assert run(loop, main()) == (b'hi\n', 0)


def test_a_unix_server_with_its_socket_file_is_not_a_blocking_call(loop, detector, tmp_path):
    path = str(tmp_path / 'server.sock')

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert not os.path.exists(path) or sys.version_info < (3, 13)


def test_sock_sendfile_is_not_a_blocking_call(loop, detector, tmp_path):
    data = os.urandom(64 * 1024)
    src = tmp_path / 'payload'
    src.write_bytes(data)

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b, open(src, 'rb') as f:
            send = asyncio.ensure_future(loop.sock_sendfile(a, f))
            got = bytearray()
            while len(got) < len(data):
                got += await loop.sock_recv(b, 65536)
            return await send, bytes(got)

    assert run(loop, main()) == (len(data), data)

