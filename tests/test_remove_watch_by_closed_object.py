"""remove_reader / remove_writer given the socket object the watch was added
with still find it after the socket was closed (its fileno() is now -1), as
asyncio's selector does by searching its keys for the object (anyio closes
a socket, then removes its watchers)."""

import socket

import pytest


@pytest.mark.parametrize('direction', ['reader', 'writer'])
def test_removing_by_a_closed_socket_object_finds_its_watch(loop, direction):
    add = getattr(loop, f'add_{direction}')
    remove = getattr(loop, f'remove_{direction}')
    a, b = socket.socketpair()
    with b:
        a.setblocking(False)
        add(a, lambda: None)
        a.close()
        assert a.fileno() == -1
        assert remove(a) is True
        with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
            remove(a)   # no longer registered: nothing left to find it by


def test_closed_object_never_watched_raises_asyncios_error(loop):
    a, b = socket.socketpair()
    b.close()
    a.close()
    with pytest.raises(ValueError, match='Invalid file descriptor: -1'):
        loop.remove_reader(a)


def test_watch_added_by_number_is_not_found_by_a_closed_object(loop):
    a, b = socket.socketpair()
    with b:
        loop.add_reader(a.fileno(), lambda: None)
        fd = a.fileno()
        a.close()
        with pytest.raises(ValueError, match='Invalid file descriptor: -1'):
            loop.remove_reader(a)
        assert loop.remove_reader(fd) is True
