"""OpenTelemetry for a ferroloop loop (the ``ferroloop[otel]`` extra).

``instrument(loop)`` turns on the loop's metrics (``Loop.enable_metrics``)
and publishes them as observable instruments, read from ``loop.metrics()``
each time the meter provider collects; slow callbacks become spans, children
of the span that was current where the callback was scheduled (or in the
task, for a task's step), so they show inside the trace that caused them.

Instruments (meter ``ferroloop``), each data point with the ``attributes``
given to ``instrument``:

- counters: ``ferroloop.loop.iterations``, ``ferroloop.loop.callbacks``,
  ``ferroloop.loop.slow_callbacks``, ``ferroloop.loop.timers.scheduled``,
  ``ferroloop.loop.timers.cancelled``, ``ferroloop.loop.timers.fired``,
  ``ferroloop.loop.tasks.created``, ``ferroloop.loop.connections.accepted``;
  ``ferroloop.loop.time`` (s), by ``ferroloop.loop.state`` (``busy``:
  running callbacks, ``polling``: waiting for events); ``ferroloop.loop.io``
  (By), by ``ferroloop.transport`` (``stream``, ``tls``, ``datagram``,
  ``pipe``) and ``network.io.direction`` (``receive``, ``transmit``);
- up-down counters: ``ferroloop.loop.fds.watched``, ``ferroloop.loop.tasks.alive``;
- gauges (s): ``ferroloop.loop.timer_lag.p50`` / ``.p99`` / ``.max`` (how late
  timers ran) and ``ferroloop.loop.ready_lag.p50`` / ``.p99`` / ``.max`` (how
  long callbacks waited in the ready queue), over everything since the
  metrics were turned on: the loop keeps one histogram, not a window.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.util.types import AttributeValue
except ImportError as _missing:
    raise ImportError("ferroloop.otel needs OpenTelemetry's API: pip install 'ferroloop[otel]'") from _missing

from . import Loop
from ._ferroloop import __version__
from ._metrics import LoopMetrics, SlowCallback

__all__ = ('instrument', 'Instrumentation', 'SPAN_NAME')

SPAN_NAME = 'ferroloop.slow_callback'
# Where a loop keeps its on_slow_callback hook.
_HOOK = '_on_slow_callback'

_Attributes = Mapping[str, AttributeValue]
_Read = Callable[[LoopMetrics], Iterable[tuple[float, _Attributes]]]
# What a meter's instruments observe of one instrumentation: its attributes
# and how to take its loop's snapshot.
_Entry = tuple[_Attributes, Callable[[], 'LoopMetrics | None']]


def _one(field: str) -> _Read:
    return lambda m: [(getattr(m, field), {})]


def _lag(field: str, stat: str) -> _Read:
    return lambda m: [(getattr(getattr(m, field), stat), {})]


def _time(m: LoopMetrics) -> Iterable[tuple[float, _Attributes]]:
    return [(m.busy_time, {'ferroloop.loop.state': 'busy'}),
            (m.poll_time, {'ferroloop.loop.state': 'polling'})]


def _io(m: LoopMetrics) -> Iterable[tuple[float, _Attributes]]:
    for kind in m.bytes_read:
        yield m.bytes_read[kind], {'ferroloop.transport': kind, 'network.io.direction': 'receive'}
        yield m.bytes_written[kind], {'ferroloop.transport': kind, 'network.io.direction': 'transmit'}


# (kind, name, unit, description, how its values are read off a snapshot)
_INSTRUMENTS: Sequence[tuple[str, str, str, str, _Read]] = (
    ('counter', 'ferroloop.loop.iterations', '{iteration}', 'Loop iterations (polls).', _one('iterations')),
    ('counter', 'ferroloop.loop.callbacks', '{callback}', 'Callbacks and task steps run.', _one('callbacks')),
    ('counter', 'ferroloop.loop.slow_callbacks', '{callback}',
     'Callbacks and task steps that ran slow_callback_duration or longer.', _one('slow_callbacks')),
    ('counter', 'ferroloop.loop.time', 's',
     'Time spent running callbacks (busy) and waiting for events (polling).', _time),
    ('counter', 'ferroloop.loop.timers.scheduled', '{timer}', 'Timers scheduled.', _one('timers_scheduled')),
    ('counter', 'ferroloop.loop.timers.cancelled', '{timer}', 'Timers cancelled.', _one('timers_cancelled')),
    ('counter', 'ferroloop.loop.timers.fired', '{timer}', 'Timers run.', _one('timers_fired')),
    ('counter', 'ferroloop.loop.tasks.created', '{task}', 'Tasks created.', _one('tasks_created')),
    ('counter', 'ferroloop.loop.connections.accepted', '{connection}',
     "Connections the loop's servers accepted.", _one('connections_accepted')),
    ('counter', 'ferroloop.loop.io', 'By', 'Bytes the transports received and transmitted.', _io),
    ('updown', 'ferroloop.loop.fds.watched', '{file_descriptor}', 'File descriptors watched now.',
     _one('fds_watched')),
    ('updown', 'ferroloop.loop.tasks.alive', '{task}', 'Tasks not done yet.', _one('tasks_alive')),
    *(('gauge', f'ferroloop.loop.{field}.{stat}', 's', f'{what}: {label} since the metrics were turned on.',
       _lag(field, stat))
      for field, what in (('timer_lag', 'How late timers ran after their deadline'),
                          ('ready_lag', 'How long callbacks waited in the ready queue'))
      for stat, label in (('p50', 'median'), ('p99', '99th percentile'), ('max', 'maximum'))),
)


class _Published:
    """The instruments of one meter, created once (a meter keeps the first
    instrument of a name and drops later ones' callbacks), each observing
    every loop instrumented on its meter provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.active: tuple[_Entry, ...] = ()
        make = {'counter': meter.create_observable_counter,
                'updown': meter.create_observable_up_down_counter,
                'gauge': meter.create_observable_gauge}
        for kind, name, unit, description, read in _INSTRUMENTS:
            make[kind](name, callbacks=[self._callback(read)], unit=unit, description=description)

    def _callback(self, read: _Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for own, snapshot in self.active:
                taken = snapshot()
                if taken is not None:
                    for value, attributes in read(taken):
                        yield Observation(value, {**own, **attributes})
        return observe


# Per meter provider: the global one's proxy hands out a new meter per call.
_published: weakref.WeakKeyDictionary[metrics.MeterProvider, _Published] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _scheduling_context(handle: asyncio.Handle) -> contextvars.Context:
    # Typed on asyncio.Handle from 3.12 on; ferroloop's handles have it on every Python.
    get_context: Callable[[], contextvars.Context] = getattr(handle, 'get_context')
    return get_context()


class Instrumentation:
    """One loop's instrumentation, made by ``instrument``; ``close()`` ends it."""

    def __init__(self, loop: Loop, meter_provider: metrics.MeterProvider, tracer: trace.Tracer,
                 slow_callback_duration: float | None, attributes: _Attributes) -> None:
        self._attributes: dict[str, AttributeValue] = dict(attributes)
        self._loop = weakref.ref(loop)
        self._tracer = tracer
        self._chained: Callable[[SlowCallback], object] | None = getattr(loop, _HOOK)
        try:
            loop.metrics()
            self._metrics_were_on = True
        except RuntimeError:
            self._metrics_were_on = False
        with _lock:
            published = _published.get(meter_provider)
            if published is None:
                meter = meter_provider.get_meter('ferroloop', __version__)
                published = _published[meter_provider] = _Published(meter)
            if any(own == self._attributes for own, _ in published.active):
                raise ValueError(f'another loop is instrumented on this meter provider with the '
                                 f'attributes {self._attributes!r}: give each loop attributes of its own')
            # Checks its arguments: nothing is published if it refuses them.
            loop.enable_metrics(slow_callback_duration=slow_callback_duration, on_slow_callback=self._slow)
            self._published = published
            self._entry: _Entry = (self._attributes, self._snapshot)
            published.active += (self._entry,)

    @property
    def closed(self) -> bool:
        return not any(entry is self._entry for entry in self._published.active)

    def _snapshot(self) -> LoopMetrics | None:
        """The loop's metrics now; None once it is gone or its metrics are off."""
        loop = self._loop()
        if loop is None:
            return None
        try:
            return loop.metrics()
        except RuntimeError:
            return None

    def _slow(self, info: SlowCallback) -> None:
        end = time.time_ns()
        attributes: dict[str, AttributeValue] = {
            **self._attributes,
            'ferroloop.slow_callback.duration': info.duration,
            'ferroloop.slow_callback.description': info.description,
        }
        if info.filename is not None and info.lineno is not None and info.function is not None:
            attributes['code.filepath'] = info.filename
            attributes['code.lineno'] = info.lineno
            attributes['code.function'] = info.function
        if info.task is not None:
            attributes['ferroloop.task.name'] = info.task.get_name()
        # The span current where the callback was scheduled, or in its task.
        parent = _scheduling_context(info.handle).run(otel_context.get_current)
        span = self._tracer.start_span(SPAN_NAME, context=parent, attributes=attributes,
                                       start_time=end - int(info.duration * 1e9))
        span.end(end_time=end)
        if self._chained is not None:
            self._chained(info)

    def close(self) -> None:
        """Stops publishing the loop's metrics and reporting its slow
        callbacks, gives back the slow-callback hook it chained, and turns
        the metrics off if they were off before. Instrumentations of one
        loop are closed in the reverse order of their making."""
        with _lock:
            if self.closed:
                return
            self._published.active = tuple(e for e in self._published.active if e is not self._entry)
        loop = self._loop()
        if loop is None or getattr(loop, _HOOK) != self._slow:
            return
        if self._metrics_were_on:
            setattr(loop, _HOOK, self._chained)
        else:
            loop.disable_metrics()


def instrument(loop: Loop, *, meter_provider: metrics.MeterProvider | None = None,
               tracer_provider: trace.TracerProvider | None = None,
               slow_callback_duration: float | None = 0.1,
               attributes: _Attributes | None = None) -> Instrumentation:
    """Publishes `loop`'s metrics as OpenTelemetry instruments and its slow
    callbacks as spans, through the given providers (the global ones by
    default).

    Turns the loop's metrics on (``Loop.enable_metrics``) with
    *slow_callback_duration* (None: no slow-callback spans); a hook already
    given as ``on_slow_callback`` is still called, after the span is made.
    *attributes* go on every data point and span: each loop instrumented
    on one meter provider needs attributes of its own (e.g. ``{'loop':
    'worker-1'}``), ValueError otherwise.
    """
    if not isinstance(loop, Loop):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f'instrument() needs a ferroloop loop, not {type(loop).__name__}')
    tracer = trace.get_tracer('ferroloop', __version__, tracer_provider)
    return Instrumentation(loop, meter_provider or metrics.get_meter_provider(), tracer,
                           slow_callback_duration, attributes or {})
