"""getaddrinfo of literal hosts: ferroloop's answers are exactly socket.getaddrinfo's.

ferroloop builds the answer for a literal address itself instead of asking
libc; these tests hold it to ``socket.getaddrinfo`` over a generated matrix
of hosts, ports, families, socket types, protocols and flags: the same
entries in the same order with the same enum types, or the same exception
with the same arguments.
"""

import asyncio
import itertools
import socket

import pytest

import ferroloop
from ferroloop import _resolver
from support import run

HOSTS = ['127.0.0.1', '0.0.0.0', '255.255.255.255', '10.20.30.40', b'127.0.0.1', b'\xff',
         '::1', '::', '::FFFF:1.2.3.4', '2001:DB8::0001', 'fe80::1', b'::1',
         '010.0.0.1', '1.2.3', '256.1.1.1', ' 127.0.0.1', '127.0.0.1 ', '\u0661.0.0.1',
         'fe80::1%lo', '1::2::3', '', None, bytearray(b'127.0.0.1')]
PORTS = [0, 80, 65535, 65536, -1, 2**64, None, '80', b'443', '080', '', ' 80',
         '\u0668\u0660', '99999', True, 80.0, bytearray(b'80')]
FAMILIES = [0, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, True]
TYPES = [0, socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET]
PROTOS = [0, socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_SCTP]
FLAGS = [0, socket.AI_PASSIVE, socket.AI_CANONNAME, socket.AI_NUMERICHOST, socket.AI_NUMERICSERV,
         socket.AI_CANONNAME | socket.AI_NUMERICHOST, socket.AI_ADDRCONFIG, socket.AI_V4MAPPED, 0x4000]


def outcome(call, *args):
    """What a call gives: its entries with their exact types, or its exception."""
    try:
        result = call(*args)
    except Exception as e:  # noqa: BLE001 (the exception is the outcome)
        return ('raises', type(e), e.args)
    return [tuple((type(v), v) for v in entry) for entry in result]


def test_literal_answers_equal_socket_getaddrinfo_over_the_matrix():
    # Twice: the second pass is answered from the answers already built
    # (a fresh list each time, which the first pass's caller changed).
    for _ in range(2):
        built = 0
        for args in itertools.product(HOSTS, PORTS, FAMILIES, TYPES, PROTOS, FLAGS):
            answer = _resolver._literal_addrinfo(*args)
            if answer is None:
                continue
            built += 1
            answer.append('changed by the caller')
            assert outcome(_resolver._literal_addrinfo, *args) == outcome(socket.getaddrinfo, *args), args
        # The common requests are built, not handed to libc.
        assert built > 1000


def test_common_requests_are_built_without_libc():
    for args in [('127.0.0.1', 8080, 0, socket.SOCK_STREAM, 0, 0),
                 ('::1', '443', socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, 0),
                 ('127.0.0.1', 53, 0, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST),
                 (b'10.0.0.1', None, 0, 0, 0, socket.AI_PASSIVE | socket.AI_CANONNAME)]:
        assert _resolver._literal_addrinfo(*args) == socket.getaddrinfo(*args)


@pytest.mark.parametrize('kind', ['ferroloop', 'asyncio'])
def test_loop_getaddrinfo_answers_as_socket_getaddrinfo(kind):
    loop = ferroloop.new_event_loop() if kind == 'ferroloop' else asyncio.SelectorEventLoop()
    # Hosts glibc reads as addresses (some only by inet_aton or with a scope
    # id, which go to the executor): none of them may reach a name server.
    numeric_hosts = ['127.0.0.1', b'127.0.0.1', '::1', '::FFFF:1.2.3.4', 'fe80::1',
                     '010.0.0.1', '1.2.3', 'fe80::1%lo']

    async def main():
        for host, port, family, type_, flags in itertools.product(
                numeric_hosts, [80, '443', None, 65536, -1], FAMILIES[:3], TYPES[:3],
                [0, socket.AI_CANONNAME, socket.AI_V4MAPPED]):
            args = (host, port, family, type_, 0, flags)
            try:
                got = await loop.getaddrinfo(host, port, family=family, type=type_, flags=flags)
            except Exception as e:  # noqa: BLE001
                got = ('raises', type(e), e.args)
            else:
                got = [tuple((type(v), v) for v in entry) for entry in got]
            assert got == outcome(socket.getaddrinfo, *args), args

    try:
        run(loop, main(), timeout=60)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
