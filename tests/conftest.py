"""Fixtures shared by the test modules: most tests run once on ferroloop and
once on asyncio's own loop, so each pass shows both behave the same."""

import asyncio

import pytest

import ferroloop


def _new_loop(kind):
    return ferroloop.new_event_loop() if kind == 'ferroloop' else asyncio.SelectorEventLoop()


def _close(loop):
    if loop.is_closed():
        return
    try:
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@pytest.fixture(params=['ferroloop', 'asyncio'])
def loop(request):
    lp = _new_loop(request.param)
    try:
        yield lp
    finally:
        _close(lp)


@pytest.fixture
def errors(loop):
    """What reaches the loop's exception handler during the test."""
    seen = []
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    return seen
