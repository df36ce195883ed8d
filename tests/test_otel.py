"""ferroloop.otel: a loop's metrics as OpenTelemetry instruments and its slow
callbacks as spans, read through the SDK's in-memory reader and exporter
after known workloads."""

import asyncio
import gc
import inspect
import sys
import time

import pytest

pytest.importorskip('opentelemetry.sdk', reason='needs opentelemetry-sdk (the test extra)')

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

import ferroloop  # noqa: E402
from ferroloop import otel  # noqa: E402
from support import run, run_known_workload  # noqa: E402


@pytest.fixture
def floop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def reader():
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader):
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def instrumented(floop, meter_provider, tracer_provider):
    inst = otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider)
    yield inst
    inst.close()


def collect(reader):
    """{instrument name: (its data, {frozenset(attributes): value})}."""
    out = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            assert (scope.scope.name, scope.scope.version) == ('ferroloop', ferroloop.__version__)
            for metric in scope.metrics:
                points = {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}
                out[metric.name] = (metric, points)
    return out


def value(collected, name, **attributes):
    return collected[name][1][frozenset(attributes.items())]


def line_of(function, marker):
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, text in enumerate(lines) if marker in text)


COUNTERS = {
    'ferroloop.loop.iterations': '{iteration}', 'ferroloop.loop.callbacks': '{callback}',
    'ferroloop.loop.slow_callbacks': '{callback}', 'ferroloop.loop.time': 's',
    'ferroloop.loop.timers.scheduled': '{timer}', 'ferroloop.loop.timers.cancelled': '{timer}',
    'ferroloop.loop.timers.fired': '{timer}', 'ferroloop.loop.tasks.created': '{task}',
    'ferroloop.loop.connections.accepted': '{connection}', 'ferroloop.loop.io': 'By',
}
UP_DOWN = {'ferroloop.loop.fds.watched': '{file_descriptor}', 'ferroloop.loop.tasks.alive': '{task}'}
GAUGES = {f'ferroloop.loop.{lag}.{stat}': 's'
          for lag in ('timer_lag', 'ready_lag') for stat in ('p50', 'p99', 'max')}


def test_the_instruments_names_units_and_kinds(floop, reader, instrumented):
    collected = collect(reader)
    assert set(collected) == set(COUNTERS) | set(UP_DOWN) | set(GAUGES)
    for names, monotonic in ((COUNTERS, True), (UP_DOWN, False)):
        for name, unit in names.items():
            metric, _ = collected[name]
            assert metric.unit == unit and metric.description
            assert isinstance(metric.data, Sum) and metric.data.is_monotonic is monotonic, name
    for name, unit in GAUGES.items():
        metric, _ = collected[name]
        assert metric.unit == unit and isinstance(metric.data, Gauge)


def test_a_known_workload_is_published_as_counted(floop, reader, instrumented):
    run_known_workload(floop)
    c = collect(reader)
    m = floop.metrics()
    # 100 soon, 3 timers that fired, and stop().
    assert value(c, 'ferroloop.loop.callbacks') == 104
    assert [value(c, f'ferroloop.loop.timers.{what}') for what in ('scheduled', 'cancelled', 'fired')] == [6, 2, 4]
    assert value(c, 'ferroloop.loop.iterations') == m.iterations
    assert value(c, 'ferroloop.loop.time', **{'ferroloop.loop.state': 'busy'}) == m.busy_time
    assert value(c, 'ferroloop.loop.time', **{'ferroloop.loop.state': 'polling'}) == m.poll_time
    assert m.poll_time > 0.015
    assert value(c, 'ferroloop.loop.timer_lag.max') == m.timer_lag.max
    assert value(c, 'ferroloop.loop.ready_lag.p99') == m.ready_lag.p99


def test_bytes_connections_tasks_and_fds_of_an_echo(floop, reader, instrumented):
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    seen = {}

    async def main():
        server = await floop.create_server(Echo, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        stream, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'x' * 1000)
        assert await stream.readexactly(1000) == b'x' * 1000
        sleeper = floop.create_task(asyncio.sleep(10))
        seen['during'] = collect(reader)
        sleeper.cancel()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(floop, main())
    during, after = seen['during'], collect(reader)
    for direction in ('receive', 'transmit'):
        assert value(after, 'ferroloop.loop.io', **{'ferroloop.transport': 'stream',
                                                    'network.io.direction': direction}) == 2000
        for kind in ('tls', 'datagram', 'pipe'):
            assert value(after, 'ferroloop.loop.io', **{'ferroloop.transport': kind,
                                                        'network.io.direction': direction}) == 0
    assert value(after, 'ferroloop.loop.connections.accepted') == 1
    # main's task and the sleeper, at least.
    assert value(after, 'ferroloop.loop.tasks.created') >= 2
    # While connected: the listener and both ends of the connection; main and the sleeper alive.
    assert value(during, 'ferroloop.loop.fds.watched') >= 3
    assert value(during, 'ferroloop.loop.tasks.alive') >= 2
    assert value(after, 'ferroloop.loop.tasks.alive') == 0


def test_a_slow_callback_is_a_span_in_the_trace_that_scheduled_it(floop, reader, exporter,
                                                                     meter_provider, tracer_provider):
    reported = []
    floop.enable_metrics(on_slow_callback=reported.append)
    inst = otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider,
                           slow_callback_duration=0.02)
    tracer = tracer_provider.get_tracer('test')

    async def main():
        with tracer.start_as_current_span('request'):
            floop.call_soon(time.sleep, 0.03)  # SCHEDULED
            await asyncio.sleep(0.01)

    run(floop, main())
    inst.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {'request', 'ferroloop.slow_callback'}
    slow, request = spans['ferroloop.slow_callback'], spans['request']
    assert slow.parent.span_id == request.context.span_id
    assert slow.context.trace_id == request.context.trace_id
    assert slow.attributes['code.filepath'] == __file__
    assert slow.attributes['code.lineno'] == line_of(main, '# SCHEDULED')
    assert slow.attributes['code.function'] == 'main'
    # The hook given before was chained: it saw the same callback, as long.
    [info] = reported
    # asyncio's repr of the handle: from 3.13 on the arguments only in debug mode.
    assert slow.attributes['ferroloop.slow_callback.description'] == info.description
    assert info.description == ('<Handle sleep()>' if sys.version_info >= (3, 13) else '<Handle sleep(0.03)>')
    assert slow.attributes['ferroloop.slow_callback.duration'] == info.duration >= 0.03
    assert (slow.end_time - slow.start_time) == int(info.duration * 1e9)
    # And it is the loop's hook again.
    assert floop._on_slow_callback == reported.append
    assert floop.metrics().slow_callbacks == 1


def test_a_slow_task_step_is_a_span_under_the_tasks_span(floop, exporter, meter_provider, tracer_provider):
    inst = otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider,
                           slow_callback_duration=0.02)
    tracer = tracer_provider.get_tracer('test')

    async def crunch():
        with tracer.start_as_current_span('crunching'):
            time.sleep(0.03)
            await asyncio.sleep(0)

    async def main():
        await floop.create_task(crunch(), name='cruncher')

    run(floop, main())
    inst.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    slow = spans['ferroloop.slow_callback']
    assert slow.parent.span_id == spans['crunching'].context.span_id
    assert slow.attributes['ferroloop.task.name'] == 'cruncher'
    assert slow.attributes['code.function'] == 'crunch'
    assert slow.attributes['code.filepath'] == __file__


def test_close_stops_publishing_and_turns_off_what_it_turned_on(floop, reader, exporter,
                                                                  meter_provider, tracer_provider):
    inst = otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider,
                           slow_callback_duration=0.01)
    floop.call_soon(time.sleep, 0.02)
    floop.call_soon(floop.stop)
    floop.run_forever()
    assert value(collect(reader), 'ferroloop.loop.slow_callbacks') == 1
    assert not inst.closed
    inst.close()
    assert inst.closed
    inst.close()   # a second close does nothing
    with pytest.raises(RuntimeError, match='metrics are not enabled'):
        floop.metrics()
    floop.call_soon(time.sleep, 0.02)
    floop.call_soon(floop.stop)
    floop.run_forever()
    assert all(points == {} for _, points in collect(reader).values())
    assert len(exporter.get_finished_spans()) == 1


def test_close_leaves_metrics_on_that_were_on(floop, meter_provider, tracer_provider):
    floop.enable_metrics()
    floop.call_soon(floop.stop)
    floop.run_forever()
    before = floop.metrics().callbacks
    otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider).close()
    assert floop.metrics().callbacks == before == 1
    assert floop._on_slow_callback is None


def test_instrumenting_again_after_close_publishes_again(floop, reader, meter_provider, tracer_provider):
    otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider).close()
    inst = otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider)
    floop.call_soon(floop.stop)
    floop.run_forever()
    assert value(collect(reader), 'ferroloop.loop.callbacks') == 1
    inst.close()


def test_loops_on_one_provider_need_attributes_of_their_own(floop, reader, meter_provider, tracer_provider):
    other = ferroloop.new_event_loop()
    try:
        a = otel.instrument(floop, meter_provider=meter_provider, attributes={'loop': 'a'})
        with pytest.raises(ValueError, match='attributes of its own'):
            otel.instrument(other, meter_provider=meter_provider, attributes={'loop': 'a'})
        b = otel.instrument(other, meter_provider=meter_provider, attributes={'loop': 'b'})
        for loop, n in ((floop, 1), (other, 3)):
            for _ in range(n):
                loop.call_soon(lambda: None)
            loop.call_soon(loop.stop)
            loop.run_forever()
        c = collect(reader)
        assert c['ferroloop.loop.callbacks'][1] == {frozenset({('loop', 'a')}): 2,
                                                    frozenset({('loop', 'b')}): 4}
        a.close()
        b.close()
    finally:
        other.close()


def test_a_collected_loop_is_no_longer_published(reader, meter_provider):
    loop = ferroloop.new_event_loop()
    inst = otel.instrument(loop, meter_provider=meter_provider)
    loop.close()
    del loop
    gc.collect()
    assert all(points == {} for _, points in collect(reader).values())
    inst.close()


def test_without_a_threshold_no_span_is_made_but_metrics_are_published(floop, reader, exporter,
                                                                       meter_provider, tracer_provider):
    inst = otel.instrument(floop, meter_provider=meter_provider, tracer_provider=tracer_provider,
                           slow_callback_duration=None)
    floop.call_soon(time.sleep, 0.11)
    floop.call_soon(floop.stop)
    floop.run_forever()
    assert exporter.get_finished_spans() == ()
    assert value(collect(reader), 'ferroloop.loop.callbacks') == 2
    inst.close()


def test_a_timer_held_up_shows_in_the_lag_gauges(floop, reader, instrumented):
    floop.call_later(0.01, floop.stop)
    floop.call_soon(time.sleep, 0.1)
    floop.run_forever()
    c = collect(reader)
    assert 0.085 <= value(c, 'ferroloop.loop.timer_lag.max') < 1
    assert value(c, 'ferroloop.loop.timer_lag.p50') == pytest.approx(value(c, 'ferroloop.loop.timer_lag.max'), rel=0.125)


def test_a_refused_threshold_publishes_nothing(floop, reader, meter_provider):
    with pytest.raises(TypeError, match='slow_callback_duration must be a number or None'):
        otel.instrument(floop, meter_provider=meter_provider, slow_callback_duration='0.1')
    with pytest.raises(RuntimeError, match='metrics are not enabled'):
        floop.metrics()
    assert all(points == {} for _, points in collect(reader).values())


def test_only_ferroloop_loops_are_instrumented(meter_provider):
    loop = asyncio.SelectorEventLoop()
    try:
        with pytest.raises(TypeError, match='needs a ferroloop loop, not _UnixSelectorEventLoop'):
            otel.instrument(loop, meter_provider=meter_provider)
    finally:
        loop.close()
