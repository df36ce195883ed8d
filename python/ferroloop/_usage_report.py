"""Whether the program ``python -m ferroloop run`` started ran on ferroloop.

Installing the policy reaches only code that asks asyncio for its loop;
servers that build their own (uvicorn, a worker pool of fresh interpreters)
bypass it. ``watch`` notes the class of every loop that runs, in this process
and in its children, and at exit says so on stderr when none was ferroloop's.

Children write to a file named by ``FERROLOOP_RUN_REPORT``: forked ones
through the inherited hook, fresh interpreters that use ferroloop through
``record`` in ``Loop.run_forever``.
"""

import asyncio
import atexit
import os
import sys
import tempfile

from asyncio import events

from ._ferroloop import LoopCore

ENV = 'FERROLOOP_RUN_REPORT'
PATH = os.environ.get(ENV)

_recorded = set()   # (pid, line) already written


def record(loop):
    """Notes in the report file that a loop of this class ran."""
    if isinstance(loop, LoopCore):   # ferroloop.Loop and its subclasses
        line = 'ferroloop\n'
    else:
        cls = type(loop)
        line = f'{cls.__module__}.{cls.__qualname__}\n'
    key = (os.getpid(), line)
    if PATH is None or key in _recorded:
        return
    _recorded.add(key)
    try:
        # No O_CREAT: a child outliving the first process must not leave a file behind.
        fd = os.open(PATH, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return  # the report is gone (the first process ended): nobody to tell
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _hooked(original):
    def _set_running_loop(loop):
        if loop is not None:
            record(loop)
        return original(loop)
    return _set_running_loop


# What to do instead, for programs known to build their own loop.
_FIXES = {
    'uvicorn': "start uvicorn with '--loop ferroloop:new_event_loop' "
               "(uvicorn.run(..., loop='ferroloop:new_event_loop'))",
    'gunicorn': "give gunicorn a ferroloop worker: "
                "'-k ferroloop.aiohttp_worker.GunicornWebWorker' (aiohttp) or "
                "'-k ferroloop.uvicorn_worker.UvicornWorker' (ASGI)",
    'hypercorn': "run hypercorn with '--workers 0' (its worker processes are fresh "
                 "interpreters), or serve with ferroloop.run(hypercorn.asyncio.serve(app, config))",
}
_GENERAL_FIX = ("a program that makes its own loop takes ferroloop's from its loop "
                "factory: asyncio.Runner(loop_factory=ferroloop.new_event_loop), "
                "asyncio.run(main(), loop_factory=ferroloop.new_event_loop) (3.12+) "
                "or ferroloop.run(main())")


def message(lines, program):
    """The notice for what the report file holds; None when ferroloop ran."""
    if 'ferroloop' in lines:
        return None
    others = sorted(set(lines))
    name = os.path.basename(program)
    known_fix = next((fix for key, fix in _FIXES.items() if key in name), None)
    if others:
        what = f"it ran {', '.join(others)}, a loop it built itself"
        fix = known_fix or _GENERAL_FIX
    else:
        what = "the program ran no asyncio event loop in this process"
        fix = known_fix
    text = f"ferroloop was not used: {what}."
    return text if fix is None else f"{text}\nTo run it on ferroloop, {fix}."


def watch(program):
    """Notes every loop the program runs; at exit, says so if none was ferroloop."""
    global PATH
    fd, PATH = tempfile.mkstemp(prefix='ferroloop-run-')
    os.close(fd)
    os.environ[ENV] = PATH
    hook = _hooked(events._set_running_loop)
    events._set_running_loop = hook
    asyncio._set_running_loop = hook
    atexit.register(_report, os.getpid(), PATH, program)


def _report(pid, path, program):
    if os.getpid() != pid:
        return  # a forked child: the first process tells
    try:
        with open(path) as f:
            lines = f.read().splitlines()
        os.unlink(path)
    except OSError:
        lines = []
    text = message(lines, program)
    if text is not None:
        print(text, file=sys.stderr, flush=True)
