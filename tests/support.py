"""Helpers shared by the test modules (the fixtures are in conftest.py)."""

import asyncio
import socket
import sys

import pytest

TIMEOUT = 10


def loops(ferroloop_marks=(), asyncio_marks=()):
    """Parametrizes ``loop`` with marks for one side only."""
    return pytest.mark.parametrize('loop', [
        pytest.param('ferroloop', marks=ferroloop_marks),
        pytest.param('asyncio', marks=asyncio_marks),
    ], indirect=True)


def asyncio_since(version, what):
    """The stdlib loop has ``what`` only from ``version`` on; ferroloop on every Python."""
    return loops(asyncio_marks=pytest.mark.skipif(
        sys.version_info < version,
        reason=f'asyncio {sys.version_info[0]}.{sys.version_info[1]} lacks {what}'))


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason='no IPv6 loopback')


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))
