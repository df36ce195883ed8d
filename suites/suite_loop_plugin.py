"""pytest plugin the suites runner loads into a library's own test run (``-p``).

With ``FERROLOOP_SUITE_LOOP=ferroloop`` it installs ferroloop's policy, so
``asyncio.new_event_loop()`` / ``asyncio.Runner`` (how anyio's ``asyncio``
backend and uvicorn's tests get their loop) hand out ferroloop; each test
starts with that policy whatever the previous one left installed. With
``asyncio`` the stdlib policy stays.

Either way it records, from inside the test process, the class of every loop
that ran during each test (``asyncio.events._set_running_loop``, which both
loops' ``run_forever`` call), so the runner can tell a test that ran on
ferroloop from one that quietly stayed on the stdlib loop. Tests listed in
the runner's skip file are skipped with the reason given there. One JSON line
per test goes to ``$FERROLOOP_SUITE_RESULTS/<pid>.jsonl`` (xdist workers
write their own files).
"""

import asyncio
import json
import os
import re

import pytest

LOOP = os.environ.get('FERROLOOP_SUITE_LOOP', 'asyncio')
RESULTS = os.environ['FERROLOOP_SUITE_RESULTS']
SKIPS = os.environ.get('FERROLOOP_SUITE_SKIPS', '')

_loops_seen = set()
_outcomes = {}
_messages = {}


def _loop_kind(loop):
    """'ferroloop', 'asyncio' (the stdlib's loops and their subclasses), or
    the class of another loop."""
    cls = type(loop)
    for klass in cls.__mro__:
        if klass.__module__.split('.')[0] == 'ferroloop' and klass.__name__ == 'Loop':
            return 'ferroloop'
        if klass.__module__ == 'asyncio.base_events' and klass.__name__ == 'BaseEventLoop':
            return 'asyncio'
    return f'{cls.__module__}.{cls.__qualname__}'


def _install_recorder():
    events = asyncio.events
    original = events._set_running_loop

    def _set_running_loop(loop):
        if loop is not None:
            _loops_seen.add(_loop_kind(loop))
        return original(loop)

    events._set_running_loop = _set_running_loop


def _policy_under_test():
    if LOOP == 'ferroloop':
        import ferroloop
        return ferroloop.EventLoopPolicy
    return asyncio.DefaultEventLoopPolicy


def _read_skips():
    skips = {}
    if not SKIPS:
        return skips
    with open(SKIPS, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#'):
                test, _, reason = line.partition(' # ')
                skips[test.strip()] = reason.strip() or 'listed in the runner skip file'
    return skips


def _listed(nodeid, skips):
    """The reason ``nodeid`` is skipped: an entry that is the id, its test
    without parameters or its class, or matches with ``*`` as any text."""
    for test, reason in skips.items():
        if '*' in test:
            if re.fullmatch('.*'.join(map(re.escape, test.split('*'))), nodeid):
                return reason
        elif nodeid == test or nodeid.startswith((test + '[', test + '::')):
            return reason
    return None


def ferroloop_loop_setup(use_subprocess=False):
    """uvicorn's loop setup function for ferroloop (its ``--loop`` takes
    ``module:function``): returns the loop factory."""
    import ferroloop
    return ferroloop.new_event_loop


def _uvicorn_auto_loop():
    """uvicorn's ``loop="auto"`` (its default) picks uvloop when installed,
    else ``asyncio.SelectorEventLoop`` itself, not the policy's loop. Under
    ferroloop "auto" picks ferroloop, as it would pick uvloop; an explicit
    ``loop="asyncio"`` still gets the stdlib loop."""
    try:
        import uvicorn.config
    except ImportError:
        return
    uvicorn.config.LOOP_FACTORIES['auto'] = f'{__name__}:ferroloop_loop_setup'


def pytest_configure(config):
    _install_recorder()
    asyncio.set_event_loop_policy(_policy_under_test()())
    if LOOP == 'ferroloop':
        _uvicorn_auto_loop()


def pytest_collection_modifyitems(config, items):
    skips = _read_skips()
    for item in items:
        reason = _listed(item.nodeid, skips)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f'suites runner: {reason}'))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    policy = asyncio.get_event_loop_policy()
    if type(policy) is not _policy_under_test():
        asyncio.set_event_loop_policy(_policy_under_test()())
    _loops_seen.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    previous = _outcomes.get(item.nodeid, 'pass')
    if report.skipped:
        current = 'xfail' if hasattr(report, 'wasxfail') else 'skip'
    elif report.failed:
        current = 'fail' if report.when == 'call' else 'error'
    elif report.when == 'call' and hasattr(report, 'wasxfail'):
        current = 'xpass'
    else:
        current = 'pass'
    # The first phase that did not pass decides (a teardown error after a
    # passing call makes it an error).
    _outcomes[item.nodeid] = previous if previous != 'pass' else current
    if report.failed:
        _messages.setdefault(item.nodeid, str(report.longrepr)[-3000:])
    if report.when == 'teardown':
        line = {'test': item.nodeid, 'outcome': _outcomes.pop(item.nodeid),
                'loops': sorted(_loops_seen)}
        message = _messages.pop(item.nodeid, None)
        if message is not None:
            line['message'] = message
        with open(os.path.join(RESULTS, f'{os.getpid()}.jsonl'), 'a', encoding='utf-8') as f:
            f.write(json.dumps(line) + '\n')
