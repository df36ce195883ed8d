"""The stream transport itself, on a connected socket pair.

Each test drives ``loop._make_socket_transport`` (the hook asyncio's own
selector loop has too) on ferroloop and on the stdlib loop, and checks what
the protocol saw and what reached the peer.
"""

import asyncio
import gc
import socket
import warnings

import pytest

import ferroloop
import support


class Recorder(support.Recorder):
    # These tests check connection_lost's argument type in the event list.
    lost_with_type = True


@pytest.fixture(params=['ferroloop', 'asyncio'])
def loop(request):
    lp = ferroloop.new_event_loop() if request.param == 'ferroloop' else asyncio.SelectorEventLoop()
    yield lp
    if not lp.is_closed():
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()


@pytest.fixture(params=['tcp', 'unix'])
def pair(request):
    if request.param == 'unix':
        a, b = socket.socketpair()
    else:
        lsock = socket.create_server(('127.0.0.1', 0))
        a = socket.create_connection(lsock.getsockname())
        b, _ = lsock.accept()
        lsock.close()
    a.setblocking(False)
    b.setblocking(True)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def make(loop, sock, protocol):
    waiter = loop.create_future()
    tr = loop._make_socket_transport(sock, protocol, waiter)
    loop.run_until_complete(waiter)
    return tr


async def read_peer(loop, sock, into, until=None):
    """Reads the blocking peer socket in a thread (the loop keeps running)
    until `until` bytes arrived, or end of stream."""
    while until is None or len(into) < until:
        chunk = await loop.run_in_executor(None, sock.recv, 1 << 20)
        if not chunk:
            return
        into.extend(chunk)


def spin(loop, cond, timeout=5.0):
    async def wait():
        while not cond():
            await asyncio.sleep(0.001)
    loop.run_until_complete(asyncio.wait_for(wait(), timeout))


def test_transport_is_an_asyncio_transport_with_socket_extra_info(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    assert isinstance(tr, asyncio.Transport)
    assert proto.events == ['made'] and proto.transport is tr
    assert tr.get_extra_info('sockname') == a.getsockname()
    assert tr.get_extra_info('peername') == a.getpeername()
    tsock = tr.get_extra_info('socket')
    assert tsock.fileno() == a.fileno() and tsock.family == a.family
    assert tr.get_extra_info('nonexistent', 'default') == 'default'
    assert tr.get_protocol() is proto
    assert tr.can_write_eof() is True
    tr.close()
    loop.run_until_complete(proto.lost)


def test_data_both_ways_then_peer_eof_closes(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    tr.write(b'to peer')
    tr.writelines([b' and ', bytearray(b'more'), memoryview(b'!')])
    got = b''
    while len(got) < len(b'to peer and more!'):
        got += b.recv(100)
    assert got == b'to peer and more!'
    b.sendall(b'from peer')
    spin(loop, lambda: bytes(proto.data) == b'from peer')
    b.shutdown(socket.SHUT_WR)
    assert loop.run_until_complete(proto.lost) is None
    assert proto.events == ['made', 'data', 'eof', ('lost', None)]
    assert tr.is_closing()


def test_large_and_small_messages_arrive_whole_then_eof(loop, pair):
    # After a large read the transport reads at the size the kernel reports
    # waiting; small messages, and end of stream, must still come through.
    a, b = pair
    seen_types = set()

    class Typed(Recorder):
        def data_received(self, data):
            seen_types.add(type(data))
            super().data_received(data)

    proto = Typed(loop)
    make(loop, a, proto)
    expected = bytearray()
    for i, size in enumerate([40_000, 100 * 1024, 1, 70_000, 300 * 1024, 5, 33 * 1024]):
        message = bytes((i * 7 + j) % 251 for j in range(size))
        expected += message
        # From a thread: a Unix socket pair buffers less than 300 KiB.
        sent = loop.run_in_executor(None, b.sendall, message)
        spin(loop, lambda: len(proto.data) == len(expected))
        loop.run_until_complete(sent)
        assert proto.data == expected
    b.shutdown(socket.SHUT_WR)
    assert loop.run_until_complete(proto.lost) is None
    assert proto.events == ['made', 'data', 'eof', ('lost', None)]
    assert seen_types == {bytes}



def test_bytes_given_to_data_received_stay_what_arrived(loop, pair):
    # ferroloop refills a bytes object data_received let go of for the next
    # read: objects the protocol kept, and the hash of a refilled one, must
    # never show it.
    a, b = pair
    kept = []
    hashes = []

    class Keeper(Recorder):
        def data_received(self, data):
            super().data_received(data)
            hashes.append((hash(data), hash(bytes(bytearray(data)))))
            if data[0] % 2 == 0:
                kept.append((data, bytes(bytearray(data))))

    proto = Keeper(loop)
    make(loop, a, proto)
    expected = bytearray()
    for i in range(20):
        message = bytes([i]) * (2000 + 100 * (i % 3))
        expected += message
        b.sendall(message)
        spin(loop, lambda: len(proto.data) == len(expected))
    assert proto.data == expected
    assert len(kept) >= 10
    assert all(data == copy for data, copy in kept)
    assert all(cached == fresh for cached, fresh in hashes)

def test_eof_received_true_keeps_the_transport_writable(loop, pair):
    a, b = pair
    proto = Recorder(loop, eof_keep_open=True)
    tr = make(loop, a, proto)
    b.shutdown(socket.SHUT_WR)
    spin(loop, lambda: 'eof' in proto.events)
    assert not tr.is_closing()
    tr.write(b'still here')
    assert b.recv(100) == b'still here'
    tr.close()
    loop.run_until_complete(proto.lost)
    assert b.recv(100) == b''


def test_close_delivers_everything_buffered_before_it(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    payload = bytes(range(256)) * 16384  # 4 MiB: more than the socket holds
    tr.write(payload)
    assert tr.get_write_buffer_size() > 0
    tr.close()
    assert tr.is_closing()
    got = bytearray()

    async def both():
        await asyncio.gather(read_peer(loop, b, got), proto.lost)

    loop.run_until_complete(asyncio.wait_for(both(), 10))
    assert bytes(got) == payload
    assert proto.events[-1] == ('lost', None)


def test_abort_drops_the_buffer_and_loses_the_connection_at_once(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    tr.write(b'x' * (8 << 20))
    assert tr.get_write_buffer_size() > 0
    tr.abort()
    assert tr.get_write_buffer_size() == 0
    assert loop.run_until_complete(proto.lost) is None
    assert proto.events[-1] == ('lost', None)


def test_flow_control_pauses_and_resumes_at_the_watermarks(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    tr.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
    assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    tr.write(b'y' * (4 << 20))
    assert proto.events[-1] == 'pause'
    got = bytearray()
    loop.run_until_complete(asyncio.wait_for(read_peer(loop, b, got, until=4 << 20), 10))
    assert len(got) == 4 << 20
    spin(loop, lambda: proto.events[-1] == 'resume')
    assert tr.get_write_buffer_size() == 0
    tr.close()
    loop.run_until_complete(proto.lost)


def test_bad_write_buffer_limits_are_refused(loop, pair):
    a, b = pair
    tr = make(loop, a, Recorder(loop))
    with pytest.raises(ValueError, match=r'high \(1\) must be >= low \(2\) must be >= 0'):
        tr.set_write_buffer_limits(high=1, low=2)
    tr.set_write_buffer_limits(low=100)
    assert tr.get_write_buffer_limits() == (100, 400)
    tr.close()


def test_write_errors_and_messages(loop, pair):
    a, b = pair
    tr = make(loop, a, Recorder(loop))
    # asyncio's words, which 3.14 changed ("a bytes, bytearray, or memoryview object").
    with pytest.raises(TypeError, match=r"data argument must be a .*object, not 'str'"):
        tr.write('text')
    tr.write_eof()
    assert b.recv(10) == b''
    with pytest.raises(RuntimeError, match=r'Cannot call write\(\) after write_eof\(\)'):
        tr.write(b'late')
    tr.close()


def test_write_takes_data_by_keyword_and_rejects_bad_calls_like_asyncio(loop, pair):
    a, b = pair
    tr = make(loop, a, Recorder(loop))
    tr.write(data=b'by keyword')
    got = b''
    while len(got) < len(b'by keyword'):
        got += b.recv(100)
    assert got == b'by keyword'
    with pytest.raises(TypeError, match=r"write\(\) missing 1 required positional argument: 'data'"):
        tr.write()
    with pytest.raises(TypeError, match=r"write\(\) takes 2 positional arguments but 3 were given"):
        tr.write(b'a', b'b')
    with pytest.raises(TypeError, match=r"write\(\) got an unexpected keyword argument 'date'"):
        tr.write(date=b'x')
    with pytest.raises(TypeError, match=r"write\(\) got multiple values for argument 'data'"):
        tr.write(b'a', data=b'b')
    tr.close()


def test_pause_reading_in_connection_made_holds_data_back(loop, pair):
    a, b = pair

    class Paused(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    proto = Paused(loop)
    tr = make(loop, a, proto)
    b.sendall(b'early')
    for _ in range(20):
        loop.run_until_complete(asyncio.sleep(0.001))
    assert proto.data == b'' and not tr.is_reading()
    tr.resume_reading()
    assert tr.is_reading()
    spin(loop, lambda: proto.data == b'early')
    tr.close()


def test_buffered_protocol_reads_into_its_own_buffer(loop, pair):
    a, b = pair

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(1000)
            self.received = bytearray()
            self.sizes = []
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            self.sizes.append(sizehint)
            return self.buf

        def buffer_updated(self, nbytes):
            self.received += self.buf[:nbytes]

        def eof_received(self):
            return False

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    proto = Buffered()
    make(loop, a, proto)
    payload = b'0123456789' * 500
    b.sendall(payload)
    b.shutdown(socket.SHUT_WR)
    loop.run_until_complete(proto.lost)
    assert bytes(proto.received) == payload
    assert set(proto.sizes) == {-1}


def test_data_received_rebound_on_the_instance_or_the_class_runs_from_the_next_read(loop, pair):
    # asyncio looks the callback up on every read: a protocol may switch its
    # handler by assigning to itself, and a class may be patched mid-connection.
    a, b = pair

    class Switching(Recorder):
        def data_received(self, data):
            self.calls.append(('first', data))
            self.data_received = self.second

        def second(self, data):
            self.calls.append(('second', data))

    proto = Switching(loop)
    proto.calls = []
    tr = make(loop, a, proto)
    b.sendall(b'1')
    spin(loop, lambda: len(proto.calls) == 1)
    b.sendall(b'2')
    spin(loop, lambda: len(proto.calls) == 2)
    del proto.data_received
    Switching.data_received = lambda self, data: self.calls.append(('patched', data))
    b.sendall(b'3')
    spin(loop, lambda: len(proto.calls) == 3)
    assert proto.calls == [('first', b'1'), ('second', b'2'), ('patched', b'3')]
    tr.close()


def test_buffered_callbacks_rebound_on_the_instance_run_from_the_next_read(loop, pair):
    a, b = pair

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(100)
            self.calls = []

        def get_buffer(self, sizehint):
            self.calls.append('get_buffer')
            self.get_buffer = self.other_get_buffer
            return self.buf

        def other_get_buffer(self, sizehint):
            self.calls.append('other_get_buffer')
            self.buffer_updated = self.other_buffer_updated
            return self.buf

        def buffer_updated(self, nbytes):
            self.calls.append(('buffer_updated', bytes(self.buf[:nbytes])))

        def other_buffer_updated(self, nbytes):
            self.calls.append(('other_buffer_updated', bytes(self.buf[:nbytes])))

    proto = Buffered()
    tr = make(loop, a, proto)
    b.sendall(b'1')
    spin(loop, lambda: len(proto.calls) == 2)
    b.sendall(b'2')
    spin(loop, lambda: len(proto.calls) == 4)
    assert proto.calls == ['get_buffer', ('buffer_updated', b'1'),
                           'other_get_buffer', ('other_buffer_updated', b'2')]
    tr.close()


def test_set_protocol_switches_where_data_goes(loop, pair):
    a, b = pair
    first, second = Recorder(loop), Recorder(loop)
    tr = make(loop, a, first)
    b.sendall(b'one')
    spin(loop, lambda: first.data == b'one')
    tr.set_protocol(second)
    assert tr.get_protocol() is second
    b.sendall(b'two')
    spin(loop, lambda: second.data == b'two')
    assert first.data == b'one'
    tr.close()
    loop.run_until_complete(second.lost)


def test_data_received_raising_reports_and_closes(loop, pair):
    a, b = pair
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Broken(Recorder):
        def data_received(self, data):
            raise ValueError('bad data')

    proto = Broken(loop)
    tr = make(loop, a, proto)
    b.sendall(b'boom')
    exc = loop.run_until_complete(proto.lost)
    assert isinstance(exc, ValueError)
    assert contexts[0]['message'] == 'Fatal error: protocol.data_received() call failed.'
    assert contexts[0]['transport'] is tr and contexts[0]['protocol'] is proto


def test_peer_reset_loses_the_connection_with_the_error(loop, pair):
    a, b = pair
    if a.family == socket.AF_UNIX:
        pytest.skip('RST is a TCP notion')
    proto = Recorder(loop)
    make(loop, a, proto)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
    b.close()  # linger 0: the peer sends RST
    exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 5))
    assert isinstance(exc, ConnectionResetError)


def test_writes_after_connection_lost_are_dropped(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    tr.abort()
    loop.run_until_complete(proto.lost)
    tr.write(b'into the void')  # no error, as asyncio
    assert tr.get_write_buffer_size() == 0


def test_unclosed_transport_warns_resource_warning(loop, pair):
    a, b = pair
    proto = Recorder(loop)
    tr = make(loop, a, proto)
    del proto.transport
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        del tr
        loop.close()  # the loop's reader held the transport until now
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and 'unclosed transport' in str(w.message)
               for w in caught)
    assert a.fileno() == -1  # the socket was closed with the warning
