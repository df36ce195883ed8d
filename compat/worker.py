"""Runs one test_asyncio module on the loop under test; one JSON line per event.

Started by ``run.py`` in a subprocess of its own::

    python compat/worker.py --module test_tasks --loop ferroloop --events FILE
        [--exclude FILE] [--only FILE] [--out-of-scope FILE] [--short-timeout S]

Events, appended to FILE and flushed one by one so that a hang or a crash
loses nothing already run:

    {"ev": "collected", "tests": [[id, category, note], ...]}
        every test of the module; category "run", "out_of_scope" or "replaced"
    {"ev": "start", "id": ...}
    {"ev": "end", "id": ..., "outcome": ..., "loop": ..., "time": ..., "message": ...}
    {"ev": "module_error", "message": ...}      the module could not be imported
    {"ev": "module_skip", "message": ...}       it raised SkipTest when imported
    {"ev": "finished"}

``loop`` says which loops the test ran (see ``LoopTracker``): "target" (the loop
under test), "stdlib" (only a stdlib loop: TestLoop, SelectorEventLoop, a bare
BaseEventLoop) or "none".
"""

import argparse
import faulthandler
import fnmatch
import importlib
import json
import os
import re
import signal
import sys
import time
import traceback
import unittest

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compat import adapt  # noqa: E402

PACKAGE = 'test.test_asyncio.'


def clip(message, head=3000, tail=1500):
    """Long messages keep their start (the traceback) and their end."""
    if len(message) <= head + tail:
        return message
    return message[:head] + '\n[...]\n' + message[-tail:]


def short_id(test_id):
    return test_id[len(PACKAGE):] if test_id.startswith(PACKAGE) else test_id


def load_out_of_scope(path):
    """[(glob, reason)] from out_of_scope.txt: ``glob  reason``, ``#`` comments.

    The first matching line decides; a glob written ``!glob`` keeps its tests in
    scope (an exception listed before a broader pattern).
    """
    rules = []
    if not path:
        return rules
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            glob, _, reason = line.partition(' ')
            rules.append((glob, reason.strip() or 'out of scope'))
    return rules


def out_of_scope_reason(test_id, rules):
    for glob, reason in rules:
        if fnmatch.fnmatchcase(test_id, glob.lstrip('!')):
            return None if glob.startswith('!') else reason
    return None


def read_id_file(path):
    if not path:
        return set()
    with open(path, encoding='utf-8') as f:
        return {line.strip() for line in f if line.strip()}


# -- the loop under test --------------------------------------------------------

class LoopTracker:
    """Counts, per test, the loops created and run, target vs stdlib.

    Patches ``__init__`` / ``run_forever`` of ferroloop's ``Loop`` and of
    asyncio's ``BaseEventLoop`` in this process only.
    """

    def __init__(self, kind):
        import asyncio
        from asyncio import base_events
        self.kind = kind
        self.making_target = False
        self.reset()

        tracker = self
        base_init = base_events.BaseEventLoop.__init__
        base_run = base_events.BaseEventLoop.run_forever

        def init(loop, *args, **kwargs):
            base_init(loop, *args, **kwargs)
            if tracker.making_target:
                loop._compat_target = True
                tracker.created_target += 1
            else:
                tracker.created_stdlib += 1

        def run_forever(loop):
            if getattr(loop, '_compat_target', False):
                tracker.ran_target += 1
            else:
                tracker.ran_stdlib += 1
            return base_run(loop)

        base_events.BaseEventLoop.__init__ = init
        base_events.BaseEventLoop.run_forever = run_forever

        if kind == 'ferroloop':
            import ferroloop
            loop_cls = ferroloop.Loop
            loop_init = loop_cls.__init__
            loop_run = loop_cls.run_forever

            def ferro_init(loop, *args, **kwargs):
                loop_init(loop, *args, **kwargs)
                tracker.created_target += 1

            def ferro_run(loop):
                tracker.ran_target += 1
                return loop_run(loop)

            loop_cls.__init__ = ferro_init
            loop_cls.run_forever = ferro_run
            self._factory = loop_cls
            self.policy_cls = ferroloop.EventLoopPolicy
        else:
            self._factory = asyncio.SelectorEventLoop

            class HarnessPolicy(asyncio.DefaultEventLoopPolicy):
                def _loop_factory(policy):
                    return tracker.new_loop()
            self.policy_cls = HarnessPolicy

    def new_loop(self):
        """A new loop of the kind under test (what the adaptations hand out)."""
        self.making_target = True
        try:
            return self._factory()
        finally:
            self.making_target = False

    def reset_policy(self):
        """A test starts with the harness policy, whatever the last one left.

        (test_events' PolicyTests.test_set_event_loop_policy installs a stdlib
        policy and leaves it; libregrtest restores it only per module.)
        """
        from asyncio import events
        if type(events._event_loop_policy) is not self.policy_cls:
            events._event_loop_policy = self.policy_cls()

    def reset(self):
        self.created_target = self.created_stdlib = 0
        self.ran_target = self.ran_stdlib = 0

    def category(self):
        if self.ran_target:
            return 'target'
        if self.ran_stdlib:
            return 'stdlib'
        if self.created_target:
            return 'target'
        if self.created_stdlib:
            return 'stdlib'
        return 'none'


def install_policy(tracker):
    """Makes the policy hand out the loop under test, now and after any reset.

    Test modules reset the policy with ``set_event_loop_policy(None)`` in
    setUp/tearDown/tearDownModule; None then means our policy again, both
    through that call and through asyncio's lazy default policy creation.
    """
    import asyncio
    from asyncio import events

    if tracker.kind == 'ferroloop':
        import ferroloop
        ferroloop.install()
    else:
        asyncio.set_event_loop_policy(tracker.policy_cls())

    stdlib_set_policy = events.set_event_loop_policy

    def set_event_loop_policy(policy):
        if policy is None:
            policy = tracker.policy_cls()
        stdlib_set_policy(policy)

    events.set_event_loop_policy = set_event_loop_policy
    asyncio.set_event_loop_policy = set_event_loop_policy

    if hasattr(events, '_init_event_loop_policy'):
        def init_policy():
            with events._lock:
                if events._event_loop_policy is None:
                    events._event_loop_policy = tracker.policy_cls()
        events._init_event_loop_policy = init_policy


# -- recording -------------------------------------------------------------------

class EventWriter:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, **event):
        os.write(self.fd, (json.dumps(event) + '\n').encode())


_FIXTURE = re.compile(r'^(\w+) \((.*)\)$')
_RANK = {'pass': 0, 'skip': 1, 'expected-failure': 1, 'unexpected-success': 2,
         'fail': 3, 'error': 4}


def _inject_fault(test_id):
    """Fault injection for the harness's own tests (tests/test_compat.py):
    COMPAT_FAULT_CRASH / COMPAT_FAULT_HANG name a test to abort / hang in;
    with COMPAT_FAULT_ONCE=path, only while that file does not exist yet."""
    env = os.environ
    if test_id not in (env.get('COMPAT_FAULT_CRASH'), env.get('COMPAT_FAULT_HANG')):
        return
    once = env.get('COMPAT_FAULT_ONCE')
    if once:
        if os.path.exists(once):
            return
        open(once, 'w').close()
    if test_id == env.get('COMPAT_FAULT_CRASH'):
        os.abort()
    time.sleep(3600)


class RecordingResult(unittest.TestResult):
    """Streams one "end" event per test; worst outcome wins (subtests, tearDown)."""

    def __init__(self, events, tracker):
        super().__init__()
        self.buffer = True      # test output goes into the failure message
        self.events = events
        self.tracker = tracker
        self.current = None
        self.started = set()
        self.fixture_failures = {}  # 'module.Class' or 'module' -> (outcome, message)

    def _format(self, err, test):
        return clip(self._exc_info_to_string(err, test))

    def _set(self, outcome, message=''):
        cur = self.current
        if cur is None:
            return
        if cur['outcome'] is None or _RANK[outcome] >= _RANK[cur['outcome']]:
            cur['outcome'] = outcome
            if message:
                cur['message'] = message

    def startTest(self, test):
        super().startTest(test)
        test_id = short_id(test.id())
        self.started.add(test_id)
        self.current = {'id': test_id, 'outcome': None, 'message': '',
                        't0': time.monotonic()}
        self.tracker.reset()
        self.tracker.reset_policy()
        self.events.emit(ev='start', id=test_id)
        _inject_fault(test_id)

    def stopTest(self, test):
        super().stopTest(test)
        cur, self.current = self.current, None
        if cur is None:
            return
        self.events.emit(ev='end', id=cur['id'], outcome=cur['outcome'] or 'pass',
                         loop=self.tracker.category(),
                         time=round(time.monotonic() - cur['t0'], 3),
                         message=cur['message'])

    def _fixture(self, test, err, outcome):
        """Errors of setUpClass/setUpModule/tearDown*, reported on an _ErrorHolder."""
        match = _FIXTURE.match(test.description)
        what, where = match.groups() if match else ('fixture', test.description)
        where = short_id(where)
        message = (err if isinstance(err, str) else self._format(err, test))
        if what.startswith('setUp'):
            self.fixture_failures[where] = (outcome, f'{what} failed: {message}')
        else:
            self.events.emit(ev='end', id=f'{where}.{what}', outcome=outcome,
                             loop='none', time=0, message=message)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set('pass')

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set('fail', self._format(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.suite._ErrorHolder):
            self._fixture(test, err, 'error')
        else:
            self._set('error', self._format(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.suite._ErrorHolder):
            self._fixture(test, reason, 'skip')
        else:
            self._set('skip', reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set('expected-failure')

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set('unexpected-success')

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set('fail' if failed else 'error',
                      f'{subtest.id()}\n{self._format(err, test)}')

    def not_started(self, test_id):
        """Outcome of a selected test that never started (a fixture failed)."""
        parts = test_id.split('.')
        for where in ('.'.join(parts[:2]), parts[0]):
            if where in self.fixture_failures:
                return self.fixture_failures[where]
        return ('error', 'did not run')


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--module', required=True)
    parser.add_argument('--loop', choices=('ferroloop', 'asyncio'), default='ferroloop')
    parser.add_argument('--events', required=True)
    parser.add_argument('--exclude', help='file of test ids not to run (already ran)')
    parser.add_argument('--only', help='file of test ids to run, nothing else')
    parser.add_argument('--out-of-scope')
    parser.add_argument('--short-timeout', type=float, default=10.0)
    args = parser.parse_args(argv)

    events = EventWriter(args.events)
    # The driver sends SIGUSR1 before it kills a hung worker: the stacks of
    # every thread land in the log, which the timeout record quotes.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # A worker started from a background job inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: test_runners'
    # interrupt tests would wait forever for one. Tests expect a normal
    # interpreter's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from test import support
    # A wait that test_asyncio bounds with SHORT_TIMEOUT (30 s) then fails as
    # a failure, before the driver's per-test watchdog calls it a timeout.
    support.SHORT_TIMEOUT = args.short_timeout

    tracker = LoopTracker(args.loop)
    install_policy(tracker)

    name = args.module
    try:
        module = importlib.import_module(PACKAGE + name)
        replaced = adapt.apply(module, name, tracker.new_loop)
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    except unittest.SkipTest as exc:    # e.g. "Windows only"
        events.emit(ev='module_skip', message=str(exc))
        events.emit(ev='finished')
        return 0
    except BaseException:
        events.emit(ev='module_error', message=clip(traceback.format_exc()))
        events.emit(ev='finished')
        return 0

    rules = load_out_of_scope(args.out_of_scope)
    exclude = read_id_file(args.exclude)
    only = read_id_file(args.only) if args.only else None
    collected, selected = [], []
    for test in iter_tests(suite):
        test_id = short_id(test.id())
        class_name = test_id.split('.')[1] if '.' in test_id else ''
        if class_name in replaced:
            collected.append([test_id, 'replaced', f'by {replaced[class_name]}'])
            continue
        reason = out_of_scope_reason(test_id, rules)
        if reason is not None:
            collected.append([test_id, 'out_of_scope', reason])
            continue
        collected.append([test_id, 'run', ''])
        if test_id in exclude or (only is not None and test_id not in only):
            continue
        selected.append(test)
    events.emit(ev='collected', tests=collected)

    result = RecordingResult(events, tracker)
    unittest.TestSuite(selected).run(result)
    for test in selected:
        test_id = short_id(test.id())
        if test_id not in result.started:
            outcome, message = result.not_started(test_id)
            events.emit(ev='end', id=test_id, outcome=outcome, loop='none', time=0,
                        message=clip(message))
    events.emit(ev='finished')
    # Skip interpreter teardown: a loop left in a bad state must not turn a
    # finished run into a crash.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == '__main__':
    sys.exit(main())
