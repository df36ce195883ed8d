"""The runners of the README's table (asyncio.Runner, anyio, pytest-asyncio):
each serves a loopback connection and fails unless ferroloop's loop served it."""

import asyncio
import subprocess
import sys
import textwrap

import anyio
import pytest

import ferroloop


async def echo_round_trip():
    """Serves one echo on 127.0.0.1; returns the echoed bytes and the server handler's loop."""
    seen = []

    async def handle(reader, writer):
        seen.append(type(asyncio.get_running_loop()))
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b'round trip')
        echoed = await reader.read(100)
        writer.close()
        await writer.wait_closed()
    return echoed, seen


@pytest.mark.skipif(sys.version_info < (3, 11), reason='asyncio.Runner is new in 3.11')
def test_asyncio_runner_with_loop_factory():
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        echoed, seen = runner.run(echo_round_trip())
    assert echoed == b'round trip'
    assert seen == [ferroloop.Loop]


def test_anyio_with_loop_factory_backend_option():
    seen = []

    async def handle(stream):
        async with stream:
            seen.append(type(asyncio.get_running_loop()))
            await stream.send(await stream.receive())

    async def main():
        listener = await anyio.create_tcp_listener(local_host='127.0.0.1')
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with await anyio.connect_tcp('127.0.0.1', port) as client:
                await client.send(b'through anyio')
                echoed = await client.receive()
            tg.cancel_scope.cancel()
        return echoed

    echoed = anyio.run(main, backend='asyncio',
                       backend_options={'loop_factory': ferroloop.new_event_loop})
    assert echoed == b'through anyio'
    assert seen == [ferroloop.Loop]


PYTEST_ASYNCIO_TEST = '''\
import asyncio

import pytest

import ferroloop


@pytest.mark.asyncio
async def test_served_on_ferroloop():
    served = []

    async def handle(reader, writer):
        served.append(type(asyncio.get_running_loop()))
        writer.write(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b'ping')
        assert await reader.read(100) == b'ping'
        writer.close()
    assert served == [ferroloop.Loop]
'''


@pytest.mark.parametrize('plugin_args, outcome', [
    (['-p', 'ferroloop.pytest_plugin'], '1 passed'),
    ([], '1 failed'),   # without the plugin: the stdlib loop, and the test says so
])
def test_pytest_asyncio_with_ferroloops_plugin(tmp_path, plugin_args, outcome):
    (tmp_path / 'test_app.py').write_text(textwrap.dedent(PYTEST_ASYNCIO_TEST))
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'asyncio', '-p', 'no:cacheprovider',
         '-o', 'asyncio_default_fixture_loop_scope=function', *plugin_args, 'test_app.py'],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert outcome in result.stdout, result.stdout + result.stderr
