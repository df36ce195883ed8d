"""``python -m ferroloop run --stats``: metrics on every ferroloop loop the
program makes, and when it ends a short summary of each on stderr.

Loops are watched from their ``__init__`` (so the tasks made before a loop
first runs count too) to their ``close()``, whose snapshot is kept: a
closed loop is usually gone by the time the program ends. Slow callbacks
are logged as ``enable_metrics`` logs them and the five slowest of each
loop kept for the summary, as text only (no handle, task or loop is held).
Loops of this process only: forked children report nothing.
"""

import atexit
import heapq
import itertools
import os
import sys
import time
import weakref

from ._loop import Loop

TOP = 5


class _Record:
    """What the summary needs of one loop."""

    def __init__(self, number, loop, threshold):
        self.number = number
        self.loop = weakref.ref(loop)
        self.threshold = threshold
        self.started = time.monotonic()
        self.ended = None
        self.final = None
        # (duration, order, description, origin, a task's step): the TOP
        # slowest, a min-heap.
        self.slowest = []
        self._order = itertools.count()

    def note(self, info):
        entry = (info.duration, next(self._order), info.description, info.origin, info.task is not None)
        if len(self.slowest) < TOP:
            heapq.heappush(self.slowest, entry)
        else:
            heapq.heappushpop(self.slowest, entry)

    def closed(self, loop):
        self.ended = time.monotonic()
        self.final = loop.metrics()


def watch(slow_callback_duration=0.1):
    """Enables metrics on every ferroloop loop made from now on; at exit, prints their summaries."""
    records = []
    by_loop = weakref.WeakKeyDictionary()
    init, close = Loop.__init__, Loop.close

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        record = _Record(len(records) + 1, self, slow_callback_duration)
        records.append(record)
        by_loop[self] = record
        self.enable_metrics(slow_callback_duration=slow_callback_duration, on_slow_callback=record.note)

    def close_and_keep_the_figures(self):
        close(self)
        record = by_loop.get(self)
        if record is not None and self.is_closed():
            try:
                record.closed(self)
            except RuntimeError:
                pass   # the program turned the metrics off: the summary says so

    Loop.__init__ = __init__
    Loop.close = close_and_keep_the_figures
    atexit.register(_report, os.getpid(), records)


def _report(pid, records):
    if os.getpid() != pid:
        return   # a forked child's copy
    ran = []
    for record in records:
        metrics = record.final
        if metrics is None and (loop := record.loop()) is not None:
            try:
                metrics = loop.metrics()
            except RuntimeError:
                pass
        if metrics is None or metrics.iterations or metrics.callbacks:
            ran.append((record, metrics))
    if ran:
        idle = len(records) - len(ran)
        text = '\n'.join(summary(record, metrics, len(ran)) for record, metrics in ran)
        if idle:
            text += f'\n({idle} more ferroloop loop{"s" * (idle > 1)} never ran)'
        print(text, file=sys.stderr, flush=True)


def _count(n, noun):
    return f'{n} {noun}{"s" * (n != 1)}'


def _ms(seconds):
    return f'{seconds * 1e3:.2f} ms'


def _size(n):
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024


def _share(part, whole):
    return f'{100 * part / whole:.1f}%' if whole > 0 else 'n/a'


def _shorten(text, width=100):
    return text if len(text) <= width else text[:width - 3] + '...'


def summary(record, m, loops):
    """The lines for one loop; `m` is its LoopMetrics, or None if they were turned off."""
    which = f'loop {record.number}' + (f' of {loops}' if loops > 1 else '')
    if m is None:
        return (f'ferroloop stats, {which}: none (the program turned the metrics off, '
                f'or the loop was collected unclosed)')
    ended = record.ended if record.ended is not None else time.monotonic()
    duration = ended - record.started
    other = max(duration - m.busy_time - m.poll_time, 0.0)
    lines = [
        f'ferroloop stats, {which}: {duration:.3f} s{"" if record.ended else " (not closed)"}',
        f'  iterations   {m.iterations}, callbacks {m.callbacks}'
        f' ({m.callbacks / m.iterations if m.iterations else 0:.1f} per iteration)',
        f'  time         busy {_share(m.busy_time, duration)}, polling {_share(m.poll_time, duration)},'
        f' other {_share(other, duration)}',
    ]
    for name, lag, what in (('timer lag', m.timer_lag, 'timer'), ('ready lag', m.ready_lag, 'callback')):
        lines.append(f'  {name:<12} p50 {_ms(lag.p50)}, p99 {_ms(lag.p99)}, max {_ms(lag.max)}'
                     f' ({_count(lag.count, what)})')
    lines.append(f'  tasks        {m.tasks_created} created')
    moved = [f'{kind} {_size(m.bytes_read[kind])} read, {_size(m.bytes_written[kind])} written'
             for kind in m.bytes_read if m.bytes_read[kind] or m.bytes_written[kind]]
    lines.append(f'  bytes        {"; ".join(moved) if moved else "none"}')
    if m.connections_accepted:
        lines.append(f'  accepted     {_count(m.connections_accepted, "connection")}')
    if record.threshold is not None:
        lines.append(f'  slow callbacks: {m.slow_callbacks} of {_ms(record.threshold)} or more'
                     + (', the slowest:' if record.slowest else ''))
        for duration, _, description, origin, task in sorted(record.slowest, reverse=True):
            lines.append(f'    {_ms(duration):>11}  {_shorten(description)}')
            lines.append(f'    {"":>11}  {"task at" if task else "scheduled at"} {origin or "unknown"}')
    return '\n'.join(lines)
