"""The loop core: scheduling, handles, running, tasks, errors, debug mode.

Most tests run on both ferroloop and the stdlib loop (the `any_loop` fixture):
the stdlib's behaviour is the specification, so each such test shows both
loops doing the same thing.
"""

import asyncio
import contextvars
import gc
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
import weakref

import pytest

import ferroloop


@pytest.fixture
def loop():
    lp = ferroloop.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(params=['ferroloop', 'asyncio'])
def any_loop(request):
    lp = ferroloop.new_event_loop() if request.param == 'ferroloop' else asyncio.SelectorEventLoop()
    yield lp
    lp.close()


def run_briefly(lp):
    """One iteration, as test_asyncio's utils.run_briefly does."""
    lp.run_until_complete(asyncio.sleep(0))


# -- identity ------------------------------------------------------------------

def test_loop_is_an_abstract_event_loop_accepted_by_set_event_loop(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    asyncio.set_event_loop(loop)
    try:
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)


def test_repr_shows_running_closed_and_debug(loop):
    assert repr(loop) == '<Loop running=False closed=False debug=False>'


def test_time_is_time_monotonic(loop):
    before = time.monotonic()
    t = loop.time()
    after = time.monotonic()
    assert before <= t <= after


# -- call_soon -------------------------------------------------------------------

def test_call_soon_runs_callbacks_in_order_with_args(any_loop):
    calls = []
    any_loop.call_soon(calls.append, 1)
    any_loop.call_soon(lambda a, b: calls.append(a + b), 2, 3)
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert calls == [1, 5]


def test_call_soon_runs_in_a_copy_of_the_current_context(any_loop):
    var = contextvars.ContextVar('var', default='unset')
    seen = []

    def reader():
        seen.append(var.get())
        var.set('changed inside callback')

    var.set('at schedule time')
    any_loop.call_soon(reader)
    var.set('after schedule')
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert seen == ['at schedule time']
    assert var.get() == 'after schedule'


def test_call_soon_with_explicit_context_runs_in_it(any_loop):
    var = contextvars.ContextVar('var')
    ctx = contextvars.Context()
    ctx.run(var.set, 'inside')
    seen = []
    h = any_loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    assert h._context is ctx
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert seen == ['inside']


def test_call_soon_keyword_context_from_several_call_sites_and_bad_keywords(any_loop):
    var = contextvars.ContextVar('var', default='default')
    seen = []
    a, b = contextvars.Context(), contextvars.Context()
    a.run(var.set, 'a')
    b.run(var.set, 'b')
    any_loop.call_soon(lambda: seen.append(var.get()), context=a)
    any_loop.call_soon(lambda tag: seen.append((tag, var.get())), 'second site', context=b)
    any_loop.call_soon(lambda: seen.append(var.get()), context=a)
    with pytest.raises(TypeError, match="unexpected keyword argument 'contxt'"):
        any_loop.call_soon(print, contxt=a)
    any_loop.call_soon(lambda: seen.append(var.get()), context=b)
    run_briefly(any_loop)
    assert seen == ['a', ('second site', 'b'), 'a', 'b']


def test_callbacks_scheduled_while_running_wait_for_next_iteration(any_loop):
    order = []

    def first():
        order.append('first')
        any_loop.call_soon(lambda: order.append('third'))

    any_loop.call_soon(first)
    any_loop.call_soon(lambda: order.append('second'))
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    # stop() lets the current iteration finish, so 'third' runs next run.
    assert order == ['first', 'second']
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert order == ['first', 'second', 'third']


def test_cancelled_handle_does_not_run_and_drops_its_callback(any_loop):
    calls = []
    h = any_loop.call_soon(calls.append, 'x')
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    assert h._callback is None and h._args is None
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert calls == []


def test_handle_repr_names_callback_and_cancelled_state(loop):
    def my_callback():
        pass

    h = loop.call_soon(my_callback)
    assert repr(h).startswith('<Handle ') and '.my_callback() at ' in repr(h)
    h.cancel()
    assert repr(h) == '<Handle cancelled>'
    th = loop.call_at(12.5, my_callback)
    assert repr(th).startswith('<TimerHandle when=12.5 ') and '.my_callback() at ' in repr(th)
    th.cancel()


def test_handle_types_are_exported():
    assert ferroloop.TimerHandle.__mro__[1] is ferroloop.Handle


def test_handles_are_instances_of_asyncios_handle_classes(any_loop):
    h = any_loop.call_soon(print)
    t = any_loop.call_later(10, print)
    assert isinstance(h, asyncio.Handle) and not isinstance(h, asyncio.TimerHandle)
    assert isinstance(t, asyncio.TimerHandle) and isinstance(t, asyncio.Handle)
    h.cancel()
    t.cancel()


# -- timers ------------------------------------------------------------------------

def test_call_later_fires_in_deadline_order(any_loop):
    calls = []
    any_loop.call_later(0.03, calls.append, 3)
    any_loop.call_later(0.01, calls.append, 1)
    any_loop.call_later(0.02, calls.append, 2)
    any_loop.call_later(0.04, any_loop.stop)
    t0 = time.monotonic()
    any_loop.run_forever()
    assert calls == [1, 2, 3]
    assert time.monotonic() - t0 >= 0.04


def test_timer_handle_when_and_comparisons(any_loop):
    t = any_loop.time()
    a = any_loop.call_at(t + 10, print)
    b = any_loop.call_at(t + 20, print)
    assert a.when() == t + 10
    assert a < b and b > a and a <= b and not (a == b)
    assert isinstance(a, asyncio.TimerHandle)
    a.cancel()
    b.cancel()


def test_timer_never_fires_early(any_loop):
    fired = []
    start = any_loop.time()
    any_loop.call_later(0.05, lambda: fired.append(any_loop.time()))
    any_loop.call_later(0.06, any_loop.stop)
    any_loop.run_forever()
    assert fired and fired[0] - start >= 0.05


def test_call_later_and_call_at_reject_none(any_loop):
    with pytest.raises(TypeError, match='delay must not be None'):
        any_loop.call_later(None, print)
    with pytest.raises(TypeError, match='when cannot be None'):
        any_loop.call_at(None, print)


def test_cancelled_timers_are_removed_when_they_are_the_majority(loop):
    handles = [loop.call_later(100 + i, print) for i in range(300)]
    for h in handles[:250]:
        h.cancel()
    run_briefly(loop)
    ready, timers, _ = loop._stats()
    assert timers == 50
    assert all(not h._scheduled for h in handles[:250])
    assert all(h._scheduled for h in handles[250:])
    for h in handles[250:]:
        h.cancel()


def test_a_few_cancelled_timers_leave_the_heap_when_due(loop):
    handles = [loop.call_later(100 + i, print) for i in range(10)]
    handles[0].cancel()
    handles[5].cancel()
    run_briefly(loop)
    assert loop._stats()[1] == 9  # only the cancelled head was dropped
    for h in handles:
        h.cancel()


# -- threads -------------------------------------------------------------------------

def test_call_soon_threadsafe_wakes_a_sleeping_loop(any_loop):
    got = []

    def from_thread():
        time.sleep(0.05)
        any_loop.call_soon_threadsafe(lambda x: (got.append(x), any_loop.stop()), 'woken')

    threading.Thread(target=from_thread).start()
    guard = any_loop.call_later(5, any_loop.stop)
    t0 = time.monotonic()
    any_loop.run_forever()
    guard.cancel()
    assert got == ['woken']
    assert time.monotonic() - t0 < 2


def test_many_threads_calling_soon_threadsafe_lose_nothing(loop):
    n_threads, per_thread = 4, 500
    got = []

    def worker(k):
        for i in range(per_thread):
            loop.call_soon_threadsafe(got.append, (k, i))

    async def main():
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        while len(got) < n_threads * per_thread:
            await asyncio.sleep(0.001)
        for t in threads:
            t.join()

    loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert sorted(got) == [(k, i) for k in range(n_threads) for i in range(per_thread)]


def test_debug_mode_rejects_call_soon_from_another_thread(loop):
    loop.set_debug(True)
    errors = []

    def other_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=other_thread).start())
    loop.run_forever()
    assert errors == ['Non-thread-safe operation invoked on an event loop '
                      'other than the current one']


# -- running ---------------------------------------------------------------------------

def test_run_until_complete_returns_the_result(any_loop):
    async def answer():
        await asyncio.sleep(0.001)
        return 42
    assert any_loop.run_until_complete(answer()) == 42


def test_run_until_complete_raises_the_exception(any_loop):
    async def fail():
        raise ValueError('boom')
    with pytest.raises(ValueError, match='boom'):
        any_loop.run_until_complete(fail())


def test_run_until_complete_stopped_early_raises(any_loop):
    fut = any_loop.create_future()
    any_loop.call_soon(any_loop.stop)
    with pytest.raises(RuntimeError, match='Event loop stopped before Future completed.'):
        any_loop.run_until_complete(fut)


def test_running_a_running_loop_is_an_error(loop):
    # ferroloop only: Python 3.13's own loop forgets it is running after the
    # first refused run_forever() and then really nests.
    async def nested():
        with pytest.raises(RuntimeError, match='This event loop is already running'):
            loop.run_forever()
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match='already running'):
            loop.run_until_complete(coro)
        coro.close()
        return 'checked'
    assert loop.run_until_complete(nested()) == 'checked'


def test_is_running_and_running_loop_while_running(any_loop):
    seen = []

    def probe():
        seen.append((any_loop.is_running(), asyncio.get_running_loop() is any_loop))
        any_loop.stop()

    any_loop.call_soon(probe)
    any_loop.run_forever()
    assert seen == [(True, True)]
    assert not any_loop.is_running()


def test_closed_loop_rejects_scheduling(any_loop):
    any_loop.close()
    for call in (lambda: any_loop.call_soon(print),
                 lambda: any_loop.call_later(1, print),
                 lambda: any_loop.call_at(1, print),
                 lambda: any_loop.call_soon_threadsafe(print),
                 lambda: any_loop.run_forever()):
        with pytest.raises(RuntimeError, match='Event loop is closed'):
            call()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match='Event loop is closed'):
        any_loop.run_until_complete(coro)
    coro.close()
    assert any_loop.is_closed()
    any_loop.close()  # closing twice is fine


def test_close_while_running_is_an_error(any_loop):
    errors = []

    def try_close():
        try:
            any_loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        any_loop.stop()

    any_loop.call_soon(try_close)
    any_loop.run_forever()
    assert errors == ['Cannot close a running event loop']


def test_close_releases_the_loops_file_descriptors():
    before = set(os.listdir('/proc/self/fd'))
    loops = [ferroloop.new_event_loop() for _ in range(20)]
    for lp in loops:
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()
    after = set(os.listdir('/proc/self/fd'))
    assert after - before == set()


def test_unclosed_loop_warns_resource_warning():
    lp = ferroloop.new_event_loop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        del lp
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and 'unclosed event loop' in str(w.message)
               for w in caught)


def test_keyboard_interrupt_in_callback_leaves_run_forever(loop):
    def interrupt():
        raise KeyboardInterrupt
    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    # The loop still works afterwards.
    assert loop.run_until_complete(asyncio.sleep(0, 'ok')) == 'ok'


def test_system_exit_from_a_task_propagates(loop):
    async def leave():
        raise SystemExit(3)
    with pytest.raises(SystemExit):
        loop.run_until_complete(leave())


# -- futures and tasks ---------------------------------------------------------------------

def test_create_future_is_bound_to_the_loop(any_loop):
    fut = any_loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is any_loop
    any_loop.call_soon(fut.set_result, 'done')
    assert any_loop.run_until_complete(fut) == 'done'


def test_create_task_name_and_context(any_loop):
    var = contextvars.ContextVar('var')
    ctx = contextvars.copy_context()
    ctx.run(var.set, 'ctx value')

    async def read():
        return var.get()

    task = any_loop.create_task(read(), name='reader', context=ctx)
    assert task.get_name() == 'reader'
    assert any_loop.run_until_complete(task) == 'ctx value'


def test_create_task_takes_coro_by_keyword_and_rejects_bad_calls_like_asyncio(any_loop):
    async def answer():
        return 42

    task = any_loop.create_task(coro=answer(), name='by keyword')
    assert task.get_name() == 'by keyword'
    assert any_loop.run_until_complete(task) == 42
    with pytest.raises(TypeError, match=r"create_task\(\) missing 1 required positional argument: 'coro'"):
        any_loop.create_task()
    with pytest.raises(TypeError, match=r"create_task\(\) takes 2 positional arguments but 3 were given"):
        any_loop.create_task(None, None)
    # From 3.14 on create_task passes every keyword on, and Task refuses it.
    refuser = 'Task' if sys.version_info >= (3, 14) else 'create_task'
    with pytest.raises(TypeError, match=rf"{refuser}\(\) got an unexpected keyword argument 'nme'"):
        any_loop.create_task(None, nme='x')
    with pytest.raises(TypeError, match=r"create_task\(\) got multiple values for argument 'coro'"):
        any_loop.create_task(None, coro=None)


def test_task_factory_is_used_and_can_be_reset(any_loop):
    made = []

    def factory(lp, coro, **kwargs):
        made.append(coro)
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert any_loop.get_task_factory() is None
    any_loop.set_task_factory(factory)
    assert any_loop.get_task_factory() is factory
    assert any_loop.run_until_complete(asyncio.sleep(0, 'x')) == 'x'
    assert len(made) == 1
    any_loop.set_task_factory(None)
    assert any_loop.get_task_factory() is None
    with pytest.raises(TypeError, match='task factory must be a callable or None'):
        any_loop.set_task_factory(1)


needs_314 = pytest.mark.skipif(sys.version_info < (3, 14), reason='Python 3.14 feature')


@needs_314
def test_create_task_passes_every_keyword_to_the_task_factory(any_loop):
    seen = []

    def factory(lp, coro, **kwargs):
        seen.append(dict(kwargs))
        del kwargs['label']
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def answer():
        return 42

    any_loop.set_task_factory(factory)
    task = any_loop.create_task(answer(), name='n', eager_start=False, label='mine')
    assert seen == [{'name': 'n', 'eager_start': False, 'label': 'mine'}]
    assert task.get_name() == 'n'
    assert any_loop.run_until_complete(task) == 42


@needs_314
def test_create_task_eager_start_runs_the_first_step_at_once(any_loop):
    steps = []

    async def body():
        steps.append('first step')
        await asyncio.sleep(0)
        steps.append('second step')
        return 'done'

    async def main():
        eager = any_loop.create_task(body(), eager_start=True)
        assert steps == ['first step']
        lazy = any_loop.create_task(body(), eager_start=False)
        assert steps == ['first step']
        return await eager, await lazy

    assert any_loop.run_until_complete(main()) == ('done', 'done')
    coro = body()
    with pytest.raises(TypeError, match=r"got multiple values for keyword argument 'loop'"):
        any_loop.create_task(coro, loop=any_loop)
    coro.close()    # refused, so never run: no "never awaited" warning


def test_create_task_and_future_use_asyncio_task_and_future_as_they_are_now(any_loop, monkeypatch):
    # asyncio looks tasks.Task / futures.Future up at each call; tests and
    # tools swap in the pure-Python classes.
    monkeypatch.setattr(asyncio.tasks, 'Task', asyncio.tasks._PyTask)
    monkeypatch.setattr(asyncio.futures, 'Future', asyncio.futures._PyFuture)

    async def answer():
        return 42

    task = any_loop.create_task(answer())
    assert type(task) is asyncio.tasks._PyTask
    assert type(any_loop.create_future()) is asyncio.futures._PyFuture
    assert any_loop.run_until_complete(task) == 42


@pytest.mark.skipif(sys.version_info < (3, 12), reason='asyncio 3.12 runs the handler in the context')
@pytest.mark.parametrize('source', ['callback', 'task'])
def test_exception_handler_runs_in_the_context_of_what_failed(any_loop, source):
    var = contextvars.ContextVar('var', default='outside')
    seen = []
    any_loop.set_exception_handler(lambda lp, context: seen.append((var.get(), type(context['exception']))))

    def callback():
        var.set('inside')
        1 / 0

    async def coro():
        callback()

    async def main():
        if source == 'callback':
            any_loop.call_soon(callback)
        else:
            any_loop.create_task(coro())  # dropped unretrieved: reported when freed
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gc.collect()

    any_loop.run_until_complete(main())
    assert seen == [('inside', ZeroDivisionError)]


@needs_314
def test_threadsafe_handle_cancel_from_another_thread_waits_for_the_running_callback(any_loop):
    started, finished = threading.Event(), threading.Event()
    outcome = {}

    def callback():
        started.set()
        time.sleep(0.2)  # the GIL is released: the other thread goes on
        finished.set()

    def other_thread():
        handle = any_loop.call_soon_threadsafe(callback)
        outcome['is threadsafe handle'] = isinstance(handle, asyncio.events._ThreadSafeHandle)
        started.wait(10)
        outcome['cancelled'] = handle.cancelled()  # waits for the callback
        outcome['finished first'] = finished.is_set()
        handle.cancel()
        any_loop.call_soon_threadsafe(any_loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    any_loop.run_forever()
    t.join(10)
    assert outcome == {'is threadsafe handle': True, 'cancelled': False, 'finished first': True}


@needs_314
def test_threadsafe_handle_cancelled_before_it_runs_never_runs(any_loop):
    ran = []
    gate = threading.Event()

    def other_thread():
        handle = any_loop.call_soon_threadsafe(ran.append, 'ran')
        handle.cancel()
        gate.set()
        any_loop.call_soon_threadsafe(any_loop.stop)

    any_loop.call_soon(gate.wait, 10)  # the loop is busy until then
    t = threading.Thread(target=other_thread)
    t.start()
    any_loop.run_forever()
    t.join(10)
    assert ran == []


@needs_314
def test_capture_call_graph_follows_tasks_and_task_groups(any_loop):
    def describe(graph):
        return (graph.future.get_name(),
                [getattr(f.frame, 'f_code', None) and f.frame.f_code.co_name for f in graph.call_stack],
                [describe(g) for g in graph.awaited_by])

    captured = {}

    async def leaf():
        captured['graph'] = asyncio.capture_call_graph()
        await asyncio.sleep(0)

    async def group():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(), name='leaf')

    async def main():
        await asyncio.create_task(group(), name='group')

    any_loop.run_until_complete(any_loop.create_task(main(), name='main'))
    name, stack, awaited_by = describe(captured['graph'])
    assert (name, stack) == ('leaf', ['leaf'])
    assert [a[0] for a in awaited_by] == ['group']
    assert [a[0] for a in awaited_by[0][2]] == ['main']


def _asyncio_tool_output(tool, loop_kind, tmp_path):
    """`python -m asyncio TOOL PID` on a program whose tasks wait in a
    TaskGroup, run on the given loop; the addresses and pids left out."""
    import re
    import subprocess
    import textwrap
    script = tmp_path / f'{loop_kind}_tasks.py'
    script.write_text(textwrap.dedent(f"""\
        import asyncio, sys, ferroloop
        async def leaf():
            await asyncio.sleep(60)
        async def worker():
            async with asyncio.TaskGroup() as tg:
                tg.create_task(leaf(), name='leaf-a')
                tg.create_task(leaf(), name='leaf-b')
        async def main():
            task = asyncio.create_task(worker(), name='worker')
            await asyncio.sleep(0)
            print('ready', flush=True)
            await task
        {'ferroloop.run' if loop_kind == 'ferroloop' else 'asyncio.run'}(main())
        """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == 'ready\n'
        out = subprocess.run([sys.executable, '-m', 'asyncio', tool, str(proc.pid)],
                             capture_output=True, text=True, timeout=60)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    if out.returncode != 0:
        pytest.skip(f'python -m asyncio {tool} cannot inspect here: {out.stderr.strip()[-200:]}')
    text = out.stdout.replace(str(script), 'SCRIPT').replace(str(proc.pid), 'PID')
    return sorted(re.sub(r'0x[0-9a-f]+|^\d+', 'X', line).rstrip() for line in text.splitlines())


@needs_314
@pytest.mark.parametrize('tool', ['ps', 'pstree'])
def test_python_m_asyncio_ps_and_pstree_show_ferroloop_tasks_as_asyncios(tool, tmp_path):
    ferro = _asyncio_tool_output(tool, 'ferroloop', tmp_path)
    assert any('leaf-a' in line for line in ferro)
    assert ferro == _asyncio_tool_output(tool, 'asyncio', tmp_path)


def test_gather_of_sleeping_tasks_runs_them_concurrently(loop):
    async def sleeper(i):
        await asyncio.sleep(0.05)
        return i

    async def main():
        return await asyncio.gather(*(sleeper(i) for i in range(20)))

    t0 = time.monotonic()
    assert loop.run_until_complete(main()) == list(range(20))
    assert time.monotonic() - t0 < 0.5


def test_cancelling_a_sleeping_task(loop):
    async def main():
        task = loop.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert loop.run_until_complete(main()) is True


# -- exception handling --------------------------------------------------------------------

def test_callback_exception_goes_to_custom_handler_with_asyncio_context(any_loop):
    contexts = []
    any_loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))

    def bad():
        raise ZeroDivisionError('nope')

    h = any_loop.call_soon(bad)
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert len(contexts) == 1
    lp, ctx = contexts[0]
    assert lp is any_loop
    assert ctx['message'].startswith('Exception in callback ')
    assert 'bad()' in ctx['message']
    assert isinstance(ctx['exception'], ZeroDivisionError)
    assert ctx['handle'] is h


def test_default_exception_handler_logs_to_asyncio_logger(loop, caplog):
    def bad():
        raise ValueError('logged error')

    loop.call_soon(bad)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.run_forever()
    records = [r for r in caplog.records if r.name == 'asyncio']
    assert len(records) == 1
    assert records[0].getMessage().startswith('Exception in callback ')
    assert records[0].exc_info[0] is ValueError


def test_failing_custom_handler_falls_back_to_default(loop, caplog):
    def handler(lp, ctx):
        raise RuntimeError('handler broke')

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.call_exception_handler({'message': 'original'})
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith('Unhandled error in exception handler') for m in msgs)


def test_set_exception_handler_rejects_non_callable(any_loop):
    with pytest.raises(TypeError, match='A callable object or None is expected'):
        any_loop.set_exception_handler('nope')
    assert any_loop.get_exception_handler() is None


def test_unretrieved_task_exception_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise KeyError('lost')

    async def main():
        loop.create_task(fail())
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    gc.collect()
    assert any(isinstance(c.get('exception'), KeyError) for c in contexts)


# -- debug mode ---------------------------------------------------------------------------

def test_debug_mode_rejects_coroutines_and_non_callables(any_loop):
    any_loop.set_debug(True)

    async def coro_fn():
        pass

    with pytest.raises(TypeError, match=r'coroutines cannot be used with call_soon\(\)'):
        any_loop.call_soon(coro_fn)
    # call_later goes through call_at, and the message says so.
    with pytest.raises(TypeError, match=r'a callable object was expected by call_at\(\), got 1'):
        any_loop.call_later(1, 1)


def test_debug_mode_warns_about_slow_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        loop.run_forever()
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith('Executing <Handle sleep(0.03)') and 'took' in m for m in msgs)


def test_debug_mode_handles_record_where_they_were_created(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    tb = h._source_traceback
    assert tb and tb[-1].name == 'test_debug_mode_handles_record_where_they_were_created'
    assert 'created at' in repr(h)
    h.cancel()


def test_pythonasynciodebug_turns_debug_on():
    code = 'import ferroloop; print(ferroloop.new_event_loop().get_debug())'
    env = dict(os.environ, PYTHONASYNCIODEBUG='1')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == 'True'
    out = subprocess.run([sys.executable, '-X', 'dev', '-c', code], capture_output=True, text=True)
    assert out.stdout.strip() == 'True'


# -- async generators and executor ----------------------------------------------------------

def test_shutdown_asyncgens_finalizes_suspended_generators(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append('closed')

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == ['closed']
    del g


def test_run_in_executor_returns_the_value_from_a_thread(loop):
    main_thread = threading.get_ident()

    def work(a, b):
        return a * b, threading.get_ident() != main_thread

    assert loop.run_until_complete(loop.run_in_executor(None, work, 6, 7)) == (42, True)
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match='Executor shutdown has been called'):
        loop.run_in_executor(None, work, 1, 2)


def test_set_default_executor_requires_a_thread_pool(any_loop):
    import concurrent.futures
    with pytest.raises(TypeError, match='executor must be ThreadPoolExecutor'):
        any_loop.set_default_executor(object())
    pool = concurrent.futures.ThreadPoolExecutor(1)
    any_loop.set_default_executor(pool)
    assert any_loop.run_until_complete(any_loop.run_in_executor(None, sum, [1, 2])) == 3
    pool.shutdown()


# -- policy, run, command line --------------------------------------------------------------

def test_run_returns_the_coroutines_result_and_closes_the_loop():
    seen = {}

    async def main():
        seen['loop'] = asyncio.get_running_loop()
        return 'result'

    assert ferroloop.run(main()) == 'result'
    assert isinstance(seen['loop'], ferroloop.Loop)
    assert seen['loop'].is_closed()


def test_run_cancels_leftover_tasks():
    cancelled = []

    async def forever():
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    ferroloop.run(main())
    assert cancelled == [True]


def test_run_debug_flag():
    async def main():
        return asyncio.get_running_loop().get_debug()
    assert ferroloop.run(main(), debug=True) is True


def quietly(deprecated, *args):
    """The test's own call of a policy function (deprecated from 3.14), without the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return deprecated(*args)


def test_install_makes_asyncio_run_use_ferroloop():
    old = quietly(asyncio.get_event_loop_policy)
    try:
        ferroloop.install()
        assert isinstance(quietly(asyncio.get_event_loop_policy), ferroloop.EventLoopPolicy)

        async def which():
            return type(asyncio.get_running_loop())

        assert asyncio.run(which()) is ferroloop.Loop
        lp = asyncio.new_event_loop()
        assert isinstance(lp, ferroloop.Loop)
        lp.close()
    finally:
        quietly(asyncio.set_event_loop_policy, old)


def test_event_loop_policy_is_asyncios_default_policy_handing_out_ferroloops():
    default_policy = quietly(getattr, asyncio, 'DefaultEventLoopPolicy')
    assert issubclass(ferroloop.EventLoopPolicy, default_policy)
    lp = ferroloop.EventLoopPolicy().new_event_loop()
    assert isinstance(lp, ferroloop.Loop)
    lp.close()


NO_DEPRECATION_PROGRAM = """
import asyncio, signal, ferroloop

async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.remove_signal_handler(signal.SIGUSR1)
    if loop.get_debug():
        try:
            loop.call_soon(main)
        except TypeError as exc:
            assert 'coroutines cannot be used with call_soon()' in str(exc)
        else:
            raise AssertionError('call_soon took a coroutine function')
    return type(loop).__name__

assert ferroloop.run(main()) == 'Loop'
assert ferroloop.run(main(), debug=True) == 'Loop'
with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
    assert runner.run(main()) == 'Loop'
ferroloop.install()
assert asyncio.run(main()) == 'Loop'
print('done')
"""


def test_importing_and_using_ferroloop_warns_of_no_deprecation(tmp_path):
    # 3.14 deprecated the policy functions and asyncio.iscoroutinefunction;
    # ferroloop must not call them on its users' behalf, install() included.
    strict = [sys.executable, '-W', 'error::DeprecationWarning']
    out = subprocess.run([*strict, '-c', NO_DEPRECATION_PROGRAM],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, 'done\n', '')
    script = tmp_path / 'app.py'
    script.write_text('import asyncio\nasync def main(): pass\nasyncio.run(main())\n')
    out = subprocess.run([*strict, '-m', 'ferroloop', 'run', str(script)],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, '')


def test_python_m_ferroloop_run_runs_a_script_on_ferroloop(tmp_path):
    script = tmp_path / 'app.py'
    script.write_text(
        'import asyncio, sys\n'
        'async def main():\n'
        '    print(type(asyncio.get_running_loop()).__module__, sys.argv[1:])\n'
        'asyncio.run(main())\n')
    out = subprocess.run([sys.executable, '-m', 'ferroloop', 'run', str(script), 'a', 'b'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ferroloop ['a', 'b']"


def test_python_m_ferroloop_without_script_prints_usage():
    out = subprocess.run([sys.executable, '-m', 'ferroloop'], capture_output=True, text=True)
    assert out.returncode == 2
    assert 'usage: python -m ferroloop run SCRIPT' in out.stderr


# -- resources --------------------------------------------------------------------------------

def test_handles_in_reference_cycles_are_collected(loop):
    class Owner:
        def method(self):
            pass

    o = Owner()
    o.handle = loop.call_later(100, o.method)  # owner -> handle -> bound method -> owner
    ref = weakref.ref(o)
    o.handle.cancel()
    o.handle = loop.call_soon(o.method)
    del o
    run_briefly(loop)
    gc.collect()
    assert ref() is None


def test_many_iterations_do_not_grow_memory_or_queues(loop):
    async def churn():
        for _ in range(2000):
            h = loop.call_later(10, print)
            h.cancel()
            await asyncio.sleep(0)
    loop.run_until_complete(churn())
    run_briefly(loop)
    ready, timers, fds = loop._stats()
    assert ready == 0 and timers <= 100 and fds == 0


# -- spare handles: a finished handle nothing else holds is reused by call_soon --

def test_a_finished_handle_the_caller_kept_is_never_reused(loop):
    def first():
        pass

    def later(i):
        pass

    kept = loop.call_soon(first, 1)
    run_briefly(loop)
    fresh = [loop.call_soon(later, i) for i in range(50)]
    assert all(h is not kept for h in fresh)
    assert kept._callback is first and kept._args == (1,) and not kept.cancelled()
    run_briefly(loop)
    assert kept._callback is first


def test_finished_handles_keep_no_reference_to_callback_args_or_context(loop):
    class Arg:
        pass

    ran = []

    def make_callback():
        def cb(arg):
            ran.append(type(arg).__name__)
        return cb

    cb, arg, ctx = make_callback(), Arg(), contextvars.copy_context()
    refs = [weakref.ref(cb), weakref.ref(arg), weakref.ref(ctx)]
    loop.call_soon(cb, arg, context=ctx)
    del cb, arg, ctx
    run_briefly(loop)
    assert ran == ['Arg']
    assert [r() for r in refs] == [None, None, None]


def test_handles_reused_across_iterations_run_in_their_own_contexts(any_loop):
    var = contextvars.ContextVar('var')
    seen = []

    def cb(i):
        seen.append((i, var.get('unset')))
        var.set('changed by the callback')

    def schedule(i):
        var.set(i)
        any_loop.call_soon(cb, i)

    for batch in range(3):
        for i in range(batch * 20, batch * 20 + 20):
            contextvars.copy_context().run(schedule, i)
        run_briefly(any_loop)
    assert seen == [(i, i) for i in range(60)]


def test_a_cancelled_handle_that_was_dropped_does_not_cancel_later_callbacks(any_loop):
    seen = []
    for i in range(10):
        any_loop.call_soon(seen.append, f'cancelled {i}').cancel()
    run_briefly(any_loop)
    handles = [any_loop.call_soon(seen.append, i) for i in range(10)]
    assert [h.cancelled() for h in handles] == [False] * 10
    assert [h._args for h in handles] == [(i,) for i in range(10)]
    run_briefly(any_loop)
    assert seen == list(range(10))


def test_a_weakly_referenced_finished_handle_dies_instead_of_being_reused(loop):
    def cb():
        pass

    ref = weakref.ref(loop.call_soon(cb))
    run_briefly(loop)
    assert ref() is None


def test_a_dropped_loop_is_freed_along_with_its_spare_handles():
    lp = ferroloop.new_event_loop()
    for i in range(100):
        lp.call_soon(int, i)
    run_briefly(lp)
    ref = weakref.ref(lp)
    with pytest.warns(ResourceWarning, match='unclosed event loop'):
        del lp
        gc.collect()
    assert ref() is None
