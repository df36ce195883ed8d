"""Loop microbenchmarks: one benchmark on one loop per process.

    python benchmarks/micro.py --loop ferroloop --bench call_soon_0 --seconds 0.5

Prints one JSON line: {"ops": ..., "seconds": ..., "rate": ..., "batches": ...}.

Each benchmark runs fixed-size batches. A batch times only the loop work and
then checks its own result (callbacks run == callbacks scheduled, timers fired
in deadline order, ...), raising ``WrongResult`` -- exit status 1 -- if the loop
got it wrong. One untimed warm-up batch comes first; then batches repeat until
``--seconds`` of timed work or ``--max-batches``, whichever comes first, so the
run is bounded both in count and in time.
"""

import argparse
import asyncio
import gc
import json
import socket
import sys
import time

from loops import new_loop
import udp_pipe_subprocess

perf_counter = time.perf_counter

# Watchdog for benchmarks that wait on the loop to stop itself: a loop that
# loses a callback must fail, not hang.
WATCHDOG_SECONDS = 10.0


class WrongResult(AssertionError):
    """The loop under test produced a wrong result."""


def check(ok, what):
    """Once per batch only: `what` is formatted even when `ok`."""
    if not ok:
        raise WrongResult(what)


def run_with_watchdog(loop, coro=None):
    """Run `coro` to completion, or (without one) until the benchmark calls
    ``loop.stop()`` -- or until the watchdog stops the loop, which fails."""
    fired = []
    watchdog = loop.call_later(WATCHDOG_SECONDS, lambda: (fired.append(1), loop.stop()))
    try:
        if coro is None:
            loop.run_forever()
            result = None
        else:
            result = loop.run_until_complete(coro)
    except RuntimeError:
        if not fired:
            raise
    watchdog.cancel()
    check(not fired, f'watchdog: loop did not finish within {WATCHDOG_SECONDS}s')
    return result


# -- benchmarks: each takes (loop, n), returns the timed seconds for n ops ----

def call_soon_0(loop, n):
    """``loop.call_soon(cb)``: schedule n callbacks from a running callback, run them."""
    count = 0

    def cb():
        nonlocal count
        count += 1

    def schedule():
        call_soon = loop.call_soon
        for _ in range(n):
            call_soon(cb)
        call_soon(loop.stop)        # FIFO: runs after all n callbacks

    loop.call_soon(schedule)
    t0 = perf_counter()
    loop.run_forever()
    dt = perf_counter() - t0
    check(count == n, f'call_soon: {count} callbacks ran, {n} scheduled')
    return dt


def call_soon_2(loop, n):
    """``loop.call_soon(cb, a, b)``: as call_soon_0, with two positional arguments."""
    total = 0

    def cb(a, b):
        nonlocal total
        total += a + b

    def schedule():
        call_soon = loop.call_soon
        for i in range(n):
            call_soon(cb, 1, 2)
        call_soon(loop.stop)

    loop.call_soon(schedule)
    t0 = perf_counter()
    loop.run_forever()
    dt = perf_counter() - t0
    # 3 per call: proves both arguments reached every callback.
    check(total == 3 * n, f'call_soon(cb, 1, 2): sum {total}, expected {3 * n}')
    return dt


def call_later_cancel(loop, n):
    """Schedule n far-future timers with distinct delays, cancel them all, run one turn.

    The turn after cancelling is timed too: that is where a loop with lazy
    cancellation pays to drop the cancelled entries.
    """
    fired = 0
    handles = []

    def cb():
        nonlocal fired
        fired += 1

    def schedule_and_cancel():
        call_later = loop.call_later
        append = handles.append
        for i in range(n):
            append(call_later(3600.0 + i * 1e-6, cb))
        for h in handles:
            h.cancel()
        loop.call_soon(loop.stop)

    loop.call_soon(schedule_and_cancel)
    t0 = perf_counter()
    loop.run_forever()
    dt = perf_counter() - t0
    check(len(handles) == n, f'call_later: {len(handles)} handles, expected {n}')
    check(fired == 0, f'call_later: {fired} cancelled timers fired')
    check(all(h.cancelled() for h in handles), 'call_later: a cancelled handle is not cancelled()')
    return dt


def timers_fire(loop, n):
    """n ``call_later`` timers with tiny distinct delays (10 ns apart), all actually firing.

    The delays span n * 10 ns (0.1 ms for 10,000), less than any loop takes
    to schedule them, so the timed region measures the loop's timer work and
    not the wall clock. Timers must fire in deadline order.
    """
    fired = 0
    last = -1
    out_of_order = []

    def cb(i):
        nonlocal fired, last
        if i < last:
            out_of_order.append((last, i))
        last = i
        fired += 1
        if fired == n:
            loop.stop()

    def schedule():
        call_later = loop.call_later
        for i in range(n):
            call_later(i * 1e-8, cb, i)

    loop.call_soon(schedule)
    t0 = perf_counter()
    run_with_watchdog(loop)
    dt = perf_counter() - t0
    check(fired == n, f'timers: {fired} fired, {n} scheduled')
    check(not out_of_order, f'timers: fired out of deadline order, e.g. {out_of_order[:3]}')
    return dt


def sleep0(loop, n):
    """``await asyncio.sleep(0)`` n times in one task (a bare yield to the loop)."""
    async def main():
        done = 0
        t0 = perf_counter()
        for _ in range(n):
            await asyncio.sleep(0)
            done += 1
        return perf_counter() - t0, done

    dt, done = run_with_watchdog(loop, main())
    check(done == n, f'sleep(0): {done} iterations, expected {n}')
    return dt


GATHER_WIDTH = 100


def gather(loop, n):
    """create_task + gather churn: n tasks, GATHER_WIDTH at a time, gathered."""
    async def work(i):
        return i

    expected = list(range(GATHER_WIDTH))

    async def main():
        create_task = loop.create_task
        done = 0
        t0 = perf_counter()
        for _ in range(n // GATHER_WIDTH):
            results = await asyncio.gather(*[create_task(work(i)) for i in range(GATHER_WIDTH)])
            if results != expected:     # not check(): its message would be built every time
                raise WrongResult(f'gather: results {results[:5]}..., expected {expected[:5]}...')
            done += len(results)
        return perf_counter() - t0, done

    dt, done = run_with_watchdog(loop, main())
    check(done == n // GATHER_WIDTH * GATHER_WIDTH, f'gather: {done} tasks finished, expected {n}')
    return dt


def _getaddrinfo(**kwargs):
    """``await loop.getaddrinfo('127.0.0.1', 80, **kwargs)``: a numeric host, which needs no DNS."""
    expected = socket.getaddrinfo('127.0.0.1', 80, **kwargs)

    def bench(loop, n):
        async def main():
            results = []
            append = results.append
            t0 = perf_counter()
            for _ in range(n):
                append(await loop.getaddrinfo('127.0.0.1', 80, **kwargs))
            dt = perf_counter() - t0
            # Every answer checked, after the clock stops, as the other
            # benchmarks check theirs: comparing two lists of tuples costs
            # as much as a fast resolver's answer.
            wrong = [r for r in results if r != expected]
            check(not wrong, f'getaddrinfo: {wrong[:1]!r}, expected {expected!r}')
            return dt

        return run_with_watchdog(loop, main())

    return bench


# name -> (function, ops per batch). Batches are sized so the slowest loop
# still does several per measurement.
BENCHMARKS = {
    'call_soon_0': (call_soon_0, 20_000),
    'call_soon_2': (call_soon_2, 20_000),
    'call_later_cancel': (call_later_cancel, 20_000),
    'timers_fire': (timers_fire, 10_000),
    'sleep0': (sleep0, 10_000),
    'gather': (gather, 10_000),
    'getaddrinfo': (_getaddrinfo(), 500),
    # What create_connection and client libraries' resolvers ask.
    'getaddrinfo_typed': (_getaddrinfo(type=socket.SOCK_STREAM), 500),
}
BENCHMARKS.update(udp_pipe_subprocess.benchmarks(check, run_with_watchdog))


def measure(loop_name, bench, seconds, max_batches):
    func, n = BENCHMARKS[bench]
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        func(loop, n)                       # warm-up, untimed; still checked
        ops = 0
        elapsed = 0.0
        batches = 0
        while elapsed < seconds and batches < max_batches:
            gc.collect()                    # each batch starts from the same heap state
            elapsed += func(loop, n)
            ops += n
            batches += 1
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return {'ops': ops, 'seconds': elapsed, 'rate': ops / elapsed, 'batches': batches}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--loop', required=True)
    p.add_argument('--bench', required=True, choices=sorted(BENCHMARKS))
    p.add_argument('--seconds', type=float, default=0.5, help='timed work per measurement')
    p.add_argument('--max-batches', type=int, default=1000)
    args = p.parse_args(argv)
    try:
        result = measure(args.loop, args.bench, args.seconds, args.max_batches)
    except WrongResult as exc:
        print(f'WRONG RESULT ({args.loop}, {args.bench}): {exc}', file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
