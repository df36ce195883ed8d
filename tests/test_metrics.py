"""Loop metrics (`Loop.enable_metrics`), slow-callback reports with their
origin, and callbacks run through a replaced `asyncio.Handle._run` (the
hook logfire and aiodebug install), against workloads whose figures are
known."""

import asyncio
import contextlib
import logging
import sys
import time

import pytest

import ferroloop
from support import run, run_known_workload


@pytest.fixture
def floop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def line_of(marker):
    """The line of this file holding `marker` (in a comment)."""
    with open(__file__) as f:
        for number, text in enumerate(f, 1):
            if marker in text and 'line_of' not in text:
                return number
    raise LookupError(marker)


def test_metrics_are_off_until_enabled(floop):
    with pytest.raises(RuntimeError, match='metrics are not enabled on this loop'):
        floop.metrics()
    floop.enable_metrics()
    assert floop.metrics().callbacks == 0
    floop.disable_metrics()
    with pytest.raises(RuntimeError, match='call enable_metrics'):
        floop.metrics()


def test_callbacks_iterations_and_timers_are_counted_exactly(floop):
    floop.enable_metrics()
    run_known_workload(floop)
    m = floop.metrics()
    # 100 soon, 3 timers that fired, and stop().
    assert m.callbacks == 104
    assert (m.timers_scheduled, m.timers_cancelled, m.timers_fired) == (6, 2, 4)
    assert m.iterations >= 2
    assert m.timer_lag.count == 4
    assert m.ready_lag.count == 100


def test_busy_and_poll_time_split_a_known_run(floop):
    floop.enable_metrics(slow_callback_duration=None)
    floop.call_soon(time.sleep, 0.03)
    run(floop, asyncio.sleep(0.05))
    m = floop.metrics()
    assert 0.03 <= m.busy_time < 0.045
    assert 0.03 <= m.poll_time < 0.06


def test_a_timer_delayed_by_a_blocking_callback_shows_in_the_lag(floop):
    floop.enable_metrics(slow_callback_duration=None)
    floop.call_later(0.005, lambda: None)
    floop.call_soon(time.sleep, 0.06)
    floop.call_later(0.08, floop.stop)
    floop.run_forever()
    lag = floop.metrics().timer_lag
    assert lag.count == 2
    # The first timer ran about 55 ms late, the stop timer on time.
    assert 0.045 <= lag.max < 0.1
    assert lag.p50 < 0.01
    assert lag.mean == pytest.approx(lag.max / 2, rel=0.2)


def test_a_callback_queued_behind_a_blocking_one_shows_in_the_ready_lag(floop):
    floop.enable_metrics(slow_callback_duration=None)
    floop.call_soon(time.sleep, 0.03)
    floop.call_soon(lambda: None)
    floop.call_soon(floop.stop)
    floop.run_forever()
    lag = floop.metrics().ready_lag
    assert lag.count == 3
    assert 0.03 <= lag.max < 0.06
    assert lag.p50 >= 0.03 * 0.875  # two of three waited for the sleep


def test_tasks_created_and_alive(floop):
    floop.enable_metrics()

    async def main():
        loop = asyncio.get_running_loop()
        gate = loop.create_future()

        async def wait():
            await gate
        tasks = [loop.create_task(wait()) for _ in range(7)]
        await asyncio.sleep(0)
        alive = loop.metrics().tasks_alive
        gate.set_result(None)
        await asyncio.gather(*tasks)
        return alive

    alive = floop.run_until_complete(main())
    assert alive == 8  # the seven and main
    m = floop.metrics()
    assert m.tasks_created == 8
    assert m.tasks_alive == 0


def test_the_snapshot_still_answers_after_close():
    loop = ferroloop.new_event_loop()
    loop.enable_metrics()
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    m = loop.metrics()
    assert m.callbacks == 1
    assert m.tasks_alive == 0


def test_the_snapshot_is_a_frozen_typed_object(floop):
    floop.enable_metrics()
    m = floop.metrics()
    assert isinstance(m, ferroloop.LoopMetrics)
    assert isinstance(m.timer_lag, ferroloop.LagStats)
    assert set(m.bytes_read) == set(m.bytes_written) == {'stream', 'tls', 'datagram', 'pipe'}
    with pytest.raises(AttributeError):
        m.callbacks = 5
    with pytest.raises(TypeError):
        m.bytes_read['stream'] = 1


def test_enabling_again_keeps_the_counts_and_disabling_forgets_them(floop):
    floop.enable_metrics()
    floop.call_soon(floop.stop)
    floop.run_forever()
    floop.enable_metrics(slow_callback_duration=1.0)
    assert floop.metrics().callbacks == 1
    floop.disable_metrics()
    floop.enable_metrics()
    assert floop.metrics().callbacks == 0


@pytest.mark.parametrize('kwargs, error, message', [
    ({'slow_callback_duration': 'fast'}, TypeError, 'slow_callback_duration must be a number or None, not str'),
    ({'slow_callback_duration': True}, TypeError, 'not bool'),
    ({'slow_callback_duration': -1}, ValueError, 'slow_callback_duration must be >= 0'),
    ({'slow_callback_duration': float('nan')}, ValueError, 'must be >= 0'),
    ({'on_slow_callback': 5}, TypeError, 'on_slow_callback must be a callable or None'),
])
def test_enable_metrics_refuses_bad_arguments(floop, kwargs, error, message):
    with pytest.raises(error, match=message):
        floop.enable_metrics(**kwargs)
    with pytest.raises(RuntimeError):
        floop.metrics()


def test_a_slow_callback_is_reported_once_with_the_line_that_scheduled_it(floop, caplog):
    reports = []
    floop.enable_metrics(slow_callback_duration=0.04, on_slow_callback=reports.append)

    def slow():
        time.sleep(0.05)

    floop.call_soon(slow)  # scheduled-slow
    floop.call_soon(lambda: None)
    floop.call_soon(floop.stop)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        floop.run_forever()
    assert len(reports) == 1
    report = reports[0]
    assert isinstance(report, ferroloop.SlowCallback)
    function = sys._getframe().f_code.co_name
    assert report.origin == f'{__file__}:{line_of("scheduled-slow")} in {function}'
    assert (report.filename, report.lineno, report.function) == (__file__, line_of('scheduled-slow'), function)
    assert 0.05 <= report.duration < 0.1
    assert report.task is None
    assert report.loop is floop
    assert 'slow' in report.description
    assert floop.metrics().slow_callbacks == 1
    [record] = [r for r in caplog.records if r.name == 'asyncio']
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith('Executing <Handle ')
    assert f'scheduled at {report.origin}' in record.getMessage()


def test_a_slow_timer_names_its_call_later(floop):
    reports = []
    floop.enable_metrics(slow_callback_duration=0.02, on_slow_callback=reports.append)
    floop.call_later(0.001, time.sleep, 0.03)  # scheduled-later
    floop.call_later(0.05, floop.stop)
    floop.run_forever()
    [report] = reports
    assert report.origin.startswith(f'{__file__}:{line_of("scheduled-later")} in ')


def test_a_slow_task_step_is_reported_with_its_task_and_coroutine(floop):
    reports = []
    floop.enable_metrics(slow_callback_duration=0.02, on_slow_callback=reports.append)

    async def busy():
        time.sleep(0.03)
        await asyncio.sleep(0)  # task-suspended
        return 'done'

    async def main():
        return await asyncio.get_running_loop().create_task(busy(), name='busy-task')

    assert floop.run_until_complete(main()) == 'done'
    [report] = reports
    assert report.task is not None and report.task.get_name() == 'busy-task'
    assert report.description == repr(report.task) or report.description.startswith('<Task')
    assert report.origin == f'{__file__}:{line_of("task-suspended")} in busy'
    assert (report.filename, report.lineno, report.function) == (__file__, line_of('task-suspended'), 'busy')


def test_without_a_threshold_nothing_is_reported_but_everything_counted(floop, caplog):
    floop.enable_metrics(slow_callback_duration=None, on_slow_callback=pytest.fail)
    floop.call_soon(time.sleep, 0.02)
    floop.call_soon(floop.stop)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        floop.run_forever()
    assert [r for r in caplog.records if r.name == 'asyncio'] == []
    m = floop.metrics()
    assert (m.callbacks, m.slow_callbacks) == (2, 0)


def test_a_failing_hook_goes_to_the_exception_handler(floop):
    seen = []
    floop.set_exception_handler(lambda loop, context: seen.append(context))

    def hook(info):
        raise ValueError('hook broke')

    floop.enable_metrics(slow_callback_duration=0.0, on_slow_callback=hook)
    floop.call_soon(floop.stop)
    floop.run_forever()
    [context] = seen
    assert context['message'] == 'Exception in the slow-callback hook'
    assert isinstance(context['exception'], ValueError)


def test_debug_mode_and_metrics_report_side_by_side(floop, caplog):
    reports = []
    floop.set_debug(True)
    floop.slow_callback_duration = 0.01
    floop.enable_metrics(slow_callback_duration=0.01, on_slow_callback=reports.append)
    floop.call_soon(time.sleep, 0.02)
    floop.call_soon(floop.stop)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        floop.run_forever()
    messages = [r.getMessage() for r in caplog.records if r.name == 'asyncio']
    assert len(reports) == 1
    assert sum('took' in m and 'scheduled at' in m for m in messages) == 1
    assert sum('took' in m and 'scheduled at' not in m for m in messages) == 1


# --- a replaced asyncio.Handle._run -----------------------------------------

@contextlib.contextmanager
def patched_handle_run(wrapper):
    original = asyncio.events.Handle._run
    asyncio.events.Handle._run = wrapper(original)
    try:
        yield
    finally:
        asyncio.events.Handle._run = original


def test_a_replaced_handle_run_sees_every_callback_and_task_step(loop):
    seen = []

    def counting(original):
        def _run(self):
            seen.append(self._callback)
            return original(self)
        return _run

    marks = []
    main_task = []

    async def main():
        main_task.append(asyncio.current_task())
        for i in range(10):
            loop.call_soon(marks.append, i)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    with patched_handle_run(counting):
        run(loop, main())
    assert marks == list(range(10))
    assert sum(1 for cb in seen if getattr(cb, '__self__', None) is marks) == 10
    # main's steps: the first, and one after each sleep(0).
    task_steps = [cb for cb in seen if getattr(cb, '__self__', None) is main_task[0]]
    assert len(task_steps) == 3


def test_protocol_callbacks_run_inside_a_replaced_handle_run(loop):
    inside = []
    depth = [0]

    def tracking(original):
        def _run(self):
            depth[0] += 1
            try:
                return original(self)
            finally:
                depth[0] -= 1
        return _run

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            inside.append(depth[0])
            self.transport.write(data)

    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b'ping')
        got = await reader.readexactly(4)
        writer.close()
        server.close()
        await server.wait_closed()
        return got

    with patched_handle_run(tracking):
        assert run(loop, main()) == b'ping'
    assert inside == [1]


def test_a_callbacks_exception_still_reaches_the_handler_through_the_replacement(loop, errors):
    calls = []

    def passing(original):
        def _run(self):
            calls.append(1)
            return original(self)
        return _run

    def boom():
        raise ZeroDivisionError('in callback')

    with patched_handle_run(passing):
        loop.call_soon(boom)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert len(calls) == 2
    [context] = errors
    assert isinstance(context['exception'], ZeroDivisionError)
    assert context['message'].startswith('Exception in callback ')


def test_an_exception_from_the_replacement_leaves_the_loop(loop):
    def raising(original):
        def _run(self):
            raise LookupError('from the wrapper')
        return _run

    loop.call_soon(lambda: None)
    with patched_handle_run(raising), pytest.raises(LookupError, match='from the wrapper'):
        loop.run_forever()


def test_a_slow_callback_logger_in_the_style_of_aiodebug_works(loop):
    slow = []

    def timing(original):
        def _run(self):
            t0 = time.perf_counter()
            try:
                return original(self)
            finally:
                if time.perf_counter() - t0 >= 0.02:
                    slow.append(self._callback)
        return _run

    def blocking():
        time.sleep(0.03)

    with patched_handle_run(timing):
        loop.call_soon(blocking)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert slow == [blocking]


def test_restoring_handle_run_goes_back_to_the_native_path(floop):
    seen = []

    def counting(original):
        def _run(self):
            seen.append(1)
            return original(self)
        return _run

    with patched_handle_run(counting):
        floop.call_soon(floop.stop)
        floop.run_forever()
    floop.call_soon(floop.stop)
    floop.run_forever()
    assert seen == [1]
