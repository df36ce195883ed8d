"""Debug mode: where tasks, futures and handles say they were created names
the program's frames, as on the stdlib loop."""

import asyncio
import os

import pytest

import ferroloop
from support import run

ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
FERROLOOP_DIR = os.path.dirname(ferroloop.__file__)
# Each loop's own machinery: frames that differ between the two by design.
LOOP_FILES = {os.path.join(ASYNCIO_DIR, 'base_events.py'), os.path.join(ASYNCIO_DIR, 'events.py')}


def without_loop_frames(source_traceback):
    return [(f.filename, f.lineno, f.name) for f in source_traceback
            if f.filename not in LOOP_FILES and not f.filename.startswith(FERROLOOP_DIR)]


async def child():
    await asyncio.sleep(0)


def made_in_a_coroutine(loop, make):
    async def main():
        obj = make(loop)
        if isinstance(obj, asyncio.Future):
            obj.cancel()
        elif isinstance(obj, asyncio.Handle):
            obj.cancel()
        return obj._source_traceback

    return run(loop, main())


MAKERS = {
    'asyncio.create_task': lambda loop: asyncio.create_task(child()),
    'loop.create_task': lambda loop: loop.create_task(child()),
    'asyncio.ensure_future': lambda loop: asyncio.ensure_future(child()),
    'loop.create_future': lambda loop: loop.create_future(),
    'loop.call_soon': lambda loop: loop.call_soon(print),
    'loop.call_later': lambda loop: loop.call_later(10, print),
    'loop.call_at': lambda loop: loop.call_at(loop.time() + 10, print),
    'loop.call_soon_threadsafe': lambda loop: loop.call_soon_threadsafe(print),
}


def on_both_loops(test):
    """The program's frames the two loops' source tracebacks both hold.

    A source traceback holds the innermost frames only (asyncio's debug
    depth), and the loops' own frames differ in number: the shorter list
    of program frames is compared with the end of the longer.
    """
    outcomes = []
    for loop in (asyncio.SelectorEventLoop(), ferroloop.new_event_loop()):
        loop.set_debug(True)
        try:
            outcomes.append(without_loop_frames(test(loop)))
        finally:
            loop.close()
    common = min(len(frames) for frames in outcomes)
    assert common > 0
    return [frames[-common:] for frames in outcomes]


@pytest.mark.parametrize('what', list(MAKERS))
def test_made_in_a_coroutine_the_program_frames_match_asyncios(what):
    stdlib, ours = on_both_loops(lambda loop: made_in_a_coroutine(loop, MAKERS[what]))
    assert ours == stdlib
    # The line of the maker in this file is there.
    assert any(name == '<lambda>' and filename == __file__ for filename, _, name in ours)


def test_a_task_made_before_the_loop_runs_names_the_callers_line():
    def make(loop):
        task = loop.create_task(child())
        tb = task._source_traceback
        loop.run_until_complete(task)
        return tb

    stdlib, ours = on_both_loops(make)
    assert ours == stdlib
    assert ours[-1][0] == __file__ and ours[-1][2] == 'make'


def test_the_task_of_run_until_complete_names_the_callers_line():
    def make(loop):
        seen = []

        async def main():
            seen.append(asyncio.current_task()._source_traceback)

        loop.run_until_complete(main())
        return seen[0]

    stdlib, ours = on_both_loops(make)
    assert ours == stdlib
    assert (__file__, 'make') in {(f, n) for f, _, n in ours}


def test_a_tasks_repr_says_created_at_as_asyncios():
    def make(loop):
        async def main():
            task = asyncio.create_task(child())
            text = repr(task)
            await task
            return text

        return run(loop, main())

    reprs = []
    for loop in (asyncio.SelectorEventLoop(), ferroloop.new_event_loop()):
        loop.set_debug(True)
        try:
            reprs.append(make(loop).split(' created at ')[1])
        finally:
            loop.close()
    assert reprs[0] == reprs[1]
