"""``ferroloop.run`` misused as ``asyncio.run`` can be: same exception, same
message, same warnings (and no others), on ferroloop and on the stdlib."""

import asyncio
import gc
import warnings

import pytest

import ferroloop


async def answer():
    return 42


def outcome(run, make_argument):
    """(exception type, message) or the result, and the warnings seen, of ``run(argument)``."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        try:
            result = run(make_argument())
        except Exception as exc:
            result = (type(exc), str(exc))
        gc.collect()   # a coroutine never awaited warns when it is collected
    return result, [(w.category, str(w.message)) for w in seen]


MISUSES = {
    'an int': lambda: 1,
    'a coroutine function': lambda: answer,
    'a function': lambda: print,
    'None': lambda: None,
}


@pytest.mark.parametrize('misuse', list(MISUSES))
def test_not_a_coroutine_is_refused_as_asyncio_refuses_it(misuse):
    expected = outcome(asyncio.run, MISUSES[misuse])
    got = outcome(ferroloop.run, MISUSES[misuse])
    assert got == expected
    # ValueError up to 3.13; 3.14 takes any awaitable and raises TypeError for the rest.
    assert got[0][0] in (ValueError, TypeError)


@pytest.mark.parametrize('outer', ['asyncio', 'ferroloop'])
def test_inside_a_running_loop_gives_asyncio_runs_error_and_no_stray_warning(outer):
    async def attempt(run):
        return outcome(run, answer)

    outer_run = asyncio.run if outer == 'asyncio' else ferroloop.run
    expected = outer_run(attempt(asyncio.run))
    got = outer_run(attempt(ferroloop.run))
    assert got == expected
    assert got[0] == (RuntimeError, 'asyncio.run() cannot be called from a running event loop')
    # Only the user's coroutine, never awaited, as with asyncio.run.
    assert got[1] == [(RuntimeWarning, "coroutine 'answer' was never awaited")]


def test_a_coroutine_already_awaited_fails_as_with_asyncio():
    def spent():
        coro = answer()
        asyncio.run(coro)
        return coro

    expected = outcome(asyncio.run, spent)
    got = outcome(ferroloop.run, spent)
    assert got == expected
    assert got[0][0] is RuntimeError


def test_after_a_misuse_the_next_run_works():
    with pytest.raises((ValueError, TypeError)):
        ferroloop.run(1)
    assert ferroloop.run(answer()) == 42


@pytest.mark.parametrize('debug', [True, False, None])
def test_debug_reaches_the_loop(debug):
    async def mode():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(mode(), debug=debug) == asyncio.run(mode(), debug=debug)
