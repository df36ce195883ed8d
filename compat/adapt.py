"""Where test_asyncio hard-codes the stdlib loop, put the loop under test instead.

Most of test_asyncio gets its loop from the policy (``asyncio.new_event_loop()``,
``asyncio.run()``, ``IsolatedAsyncioTestCase``), which the worker points at the
loop under test. A few places build a stdlib loop themselves; each adaptation
here is small, written for this harness, and applied the same way under
``--loop asyncio`` (where ``new_loop`` returns a ``SelectorEventLoop``), so the
sanity run shows that an adaptation itself breaks nothing.

1. Test classes whose loop factory (``create_event_loop`` / ``new_loop``) builds a
   ``SelectorEventLoop`` (test_events' ``EPollEventLoopTests`` and friends,
   test_sock_lowlevel, test_sendfile, test_buffered_proto, test_server,
   test_sslproto): one new class per set of test mixins, built on the loop
   under test and named with ``Ferroloop`` for the selector word
   (``EPollEventLoopTests`` -> ``FerroloopEventLoopTests``). The selector classes
   test the stdlib and are reported as "replaced", never run.
2. Test classes named in ``REAL_LOOP_FOR_TEST_LOOP`` get the loop under test from
   ``new_test_loop()`` when it is called without a time generator: such a
   ``TestLoop`` has no virtual time to offer (it cannot even run a timer), it
   only stands in for "a loop". With a generator, ``TestLoop`` stays.
3. test_runners and test_pep492 build a bare ``BaseEventLoop`` with a mocked
   selector as "a loop"; they get the loop under test instead.
4. From 3.14, some modules name ``asyncio.EventLoop`` (the platform's default
   loop class) to mean "a loop": test_taskgroups' ``IsolatedAsyncioTestCase``
   classes as their ``loop_factory`` (so all of test_taskgroups), test_tasks'
   and test_eager_task_factory's ``asyncio.run(..., loop_factory=...)``. In the
   modules of ``EVENT_LOOP_MEANS_A_LOOP`` that name is the loop under test: as
   a class attribute, and through the module's ``asyncio`` global, which
   becomes a view of asyncio with that one name changed. Not in test_runners,
   whose ``test_loop_factory_default_event_loop`` checks what the class is.

Tests that still run only on a stdlib loop are found at run time by the worker
(category "stdlib") and not counted.
"""

import asyncio
import inspect
import re
import types
import unittest

LOOP_FACTORY_METHODS = ('create_event_loop', 'new_loop')

# Classes whose ``new_test_loop()`` (without a generator) gives the loop under
# test. Not test_tasks' GatherTestsBase: it drives the loop through ``loop._ready``.
REAL_LOOP_FOR_TEST_LOOP = {
    'test_futures': ('DuckTests', 'BaseFutureTests', 'BaseFutureDoneCallbackTests',
                     'BaseFutureInheritanceTests'),
    'test_tasks': ('BaseTaskTests',),
}

_SELECTOR_WORDS = re.compile(r'EPoll|Poll|Selector|Select|Kqueue')


def _builds_selector_loop(func):
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    return 'SelectorEventLoop' in source


def replace_selector_classes(module, new_loop):
    """Adaptation 1. Returns {replaced class name: name of the class that replaces it}."""
    groups = {}
    for name, obj in sorted(vars(module).items()):
        if not (isinstance(obj, type) and issubclass(obj, unittest.TestCase)):
            continue
        for method in LOOP_FACTORY_METHODS:
            func = obj.__dict__.get(method)
            if func is not None and _builds_selector_loop(func):
                groups.setdefault((method, obj.__bases__), []).append(obj)
    replaced = {}
    for (method, _bases), classes in groups.items():
        # EPoll is what a Linux SelectorEventLoop uses by default: the closest
        # to what the original authors ran; its own overrides come along.
        rep = next((c for c in classes if 'EPoll' in c.__name__), classes[0])
        new_name = _SELECTOR_WORDS.sub('Ferroloop', rep.__name__, count=1)
        if new_name == rep.__name__ or hasattr(module, new_name):
            new_name = 'Ferroloop' + rep.__name__

        def factory(self):
            return new_loop()

        cls = type(new_name, (rep,), {
            method: factory,
            '__module__': module.__name__,
            '__qualname__': new_name,
        })
        setattr(module, new_name, cls)
        for c in classes:
            replaced[c.__name__] = new_name
    return replaced


def _real_loop_new_test_loop(new_loop):
    from test.test_asyncio import utils as test_utils
    stdlib_new_test_loop = test_utils.TestCase.new_test_loop

    def new_test_loop(self, gen=None):
        if gen is not None:
            return stdlib_new_test_loop(self, gen)
        loop = new_loop()
        self.set_event_loop(loop)   # registers the same close-on-cleanup
        return loop
    return new_test_loop


def _adapt_runners(module, new_loop):
    # BaseTest.tearDown checks that asyncio.run() closed the loop and ran
    # shutdown_asyncgens(); keep that check true on a real loop.
    def loop_with_shutdown_flag(self):
        loop = new_loop()
        loop.shutdown_ag_run = False
        real_shutdown = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
            await real_shutdown()
        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop
    module.BaseTest.new_loop = loop_with_shutdown_flag


def _adapt_pep492(module, new_loop):
    from test.test_asyncio import utils as test_utils

    def setUp(self):
        test_utils.TestCase.setUp(self)
        self.loop = new_loop()
        self.set_event_loop(self.loop)
    module.BaseTest.setUp = setUp


EVENT_LOOP_MEANS_A_LOOP = ('test_taskgroups', 'test_tasks', 'test_eager_task_factory')


class _AsyncioWithLoopUnderTest(types.ModuleType):
    """asyncio, except that ``EventLoop`` builds the loop under test (adaptation 4).

    Every other name is asyncio's, read and written: a test that swaps
    ``asyncio.current_task`` swaps it in asyncio itself.
    """

    def __init__(self, new_loop):
        super().__init__(asyncio.__name__, asyncio.__doc__)
        object.__setattr__(self, 'EventLoop', new_loop)

    def __getattr__(self, name):
        return getattr(asyncio, name)

    def __setattr__(self, name, value):
        setattr(asyncio, name, value)

    def __delattr__(self, name):
        delattr(asyncio, name)


def _event_loop_means_a_loop(module, new_loop):
    stdlib_event_loop = getattr(asyncio, 'EventLoop', None)
    if stdlib_event_loop is None or 'asyncio.EventLoop' not in inspect.getsource(module):
        return
    for obj in vars(module).values():
        if (isinstance(obj, type) and issubclass(obj, unittest.TestCase)
                and obj.__dict__.get('loop_factory') is stdlib_event_loop):
            obj.loop_factory = staticmethod(new_loop)
    if getattr(module, 'asyncio', None) is asyncio:
        module.asyncio = _AsyncioWithLoopUnderTest(new_loop)


MODULE_ADAPTERS = {
    'test_runners': _adapt_runners,
    'test_pep492': _adapt_pep492,
}


def apply(module, short_name, new_loop):
    """Applies every adaptation to ``module``; returns the replaced classes (see 1.)."""
    replaced = replace_selector_classes(module, new_loop)
    for class_name in REAL_LOOP_FOR_TEST_LOOP.get(short_name, ()):
        setattr(getattr(module, class_name), 'new_test_loop',
                _real_loop_new_test_loop(new_loop))
    adapter = MODULE_ADAPTERS.get(short_name)
    if adapter is not None:
        adapter(module, new_loop)
    if short_name in EVENT_LOOP_MEANS_A_LOOP:
        _event_loop_means_a_loop(module, new_loop)
    return replaced
