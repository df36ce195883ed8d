"""Loop metrics (``Loop.enable_metrics``): the snapshot's types, and the
report of a slow callback with where it came from.

The counting is native (``src/loop_core/loop_metrics.rs``); this module turns
the native snapshot into typed objects and reports slow callbacks, which is
rare by definition.
"""

import asyncio
import os
from asyncio import log as _log
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class LagStats:
    """A lag distribution, in seconds. Percentiles are read from a
    log-linear histogram, within 12.5% of the true value; ``max`` and
    ``mean`` are exact."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class LoopMetrics:
    """What a loop counted since ``enable_metrics()``; times in seconds."""

    iterations: int
    """Loop iterations (polls)."""
    callbacks: int
    """Callbacks and task steps run."""
    busy_time: float
    """Time spent running callbacks."""
    poll_time: float
    """Time spent waiting in the poll."""
    timers_scheduled: int
    timers_cancelled: int
    timers_fired: int
    fds_watched: int
    """File descriptors watched now (readers, writers, transports)."""
    connections_accepted: int
    tasks_created: int
    """Tasks made by ``create_task`` (or the task factory it calls)."""
    tasks_alive: int
    """Tasks of this loop not done now (``asyncio.all_tasks(loop)``)."""
    slow_callbacks: int
    """Callbacks that ran ``slow_callback_duration`` or longer."""
    bytes_read: 'MappingProxyType[str, int]'
    """Per transport kind: ``stream`` (TCP and Unix sockets, TLS records
    included), ``tls`` (what TLS connections deliver), ``datagram``,
    ``pipe``."""
    bytes_written: 'MappingProxyType[str, int]'
    timer_lag: LagStats
    """How late each timer ran after its deadline."""
    ready_lag: LagStats
    """How long each other callback waited between being queued and running."""


@dataclass(frozen=True, slots=True)
class SlowCallback:
    """A callback or task step that ran ``slow_callback_duration`` or longer."""

    loop: asyncio.AbstractEventLoop
    handle: asyncio.Handle
    duration: float
    description: str
    """The handle's repr, or the task's for a task step (as debug mode logs it)."""
    origin: str | None
    """``file:line in function``: where the callback was scheduled
    (``call_soon``, ``call_later``, ...), or where a task step's coroutine
    now stands; None when no Python frame scheduled it."""
    task: asyncio.Task[Any] | None
    """The task, for a task step."""
    filename: str | None = None
    """The origin's parts, None as ``origin`` is."""
    lineno: int | None = None
    function: str | None = None


def snapshot(loop: Any) -> LoopMetrics:
    raw = loop._metrics_snapshot()
    if raw is None:
        raise RuntimeError('metrics are not enabled on this loop: call enable_metrics() first')
    for key in ('timer_lag', 'ready_lag'):
        raw[key] = LagStats(*raw[key])
    for key in ('bytes_read', 'bytes_written'):
        raw[key] = MappingProxyType(raw[key])
    raw['tasks_alive'] = len(asyncio.all_tasks(loop)) if not loop.is_closed() else 0
    return LoopMetrics(**raw)


def _task_of(handle: Any) -> 'asyncio.Task[Any] | None':
    """The task a handle steps or wakes up, if it is one of a task's."""
    task = getattr(handle._callback, '__self__', None)
    return task if isinstance(task, asyncio.Task) else None


def _coroutine_origin(task: 'asyncio.Task[Any]') -> tuple[str, int, str] | None:
    coro = task.get_coro()
    code = getattr(coro, 'cr_code', None) or getattr(coro, 'gi_code', None)
    if code is None:
        return None
    frame = getattr(coro, 'cr_frame', None) or getattr(coro, 'gi_frame', None)
    line = frame.f_lineno if frame is not None else code.co_firstlineno
    return code.co_filename, line, code.co_name


def _report_slow_callback(loop: Any, handle: Any, duration: float,
                          origin: tuple[str, int, str] | None) -> None:
    """Called by the loop when a callback ran past the threshold: the hook,
    if one is set (first, so that it can take the time), then a warning on
    asyncio's logger, as debug mode's."""
    task = _task_of(handle)
    if task is not None:
        description = repr(task)
        origin = _coroutine_origin(task)
    else:
        description = repr(handle)
    filename, lineno, function = (None, None, None) if origin is None else (os.fspath(origin[0]), *origin[1:])
    where = None if origin is None else f'{filename}:{lineno} in {function}'
    hook = loop._on_slow_callback
    if hook is not None:
        info = SlowCallback(loop, handle, duration, description, where, task, filename, lineno, function)
        try:
            hook(info)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop.call_exception_handler({
                'message': 'Exception in the slow-callback hook',
                'exception': exc,
                'handle': handle,
            })
    _log.logger.warning('Executing %s took %.3f seconds (%s %s)', description, duration,
                        'task at' if task is not None else 'scheduled at', where or 'unknown')
