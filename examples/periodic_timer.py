"""A periodic timer, two ways: a callback that reschedules itself, and a task that sleeps.

``--style callback`` (the default) uses only the loop's callback API: each
tick schedules the next one with ``call_at`` on a fixed grid (start + k *
interval), so lateness of one tick does not push the later ones back, then
calls ``loop.stop()`` after the last tick.

``--style task`` writes the same timer as a coroutine: a ``while`` loop
around ``await asyncio.sleep(...)``, run by ``ferroloop.run``.

Each tick prints ``tick K at +T.TTTs`` (T measured with ``loop.time()`` since
the timer started), then ``done: N ticks in T.TTTs``.

    python examples/periodic_timer.py --ticks 5 --interval 0.1
    python examples/periodic_timer.py --style task --ticks 5 --interval 0.1
"""

import argparse
import asyncio

import ferroloop


class Ticker:
    """Calls itself back every ``interval`` seconds, ``ticks`` times, then stops the loop."""

    def __init__(self, loop, ticks, interval):
        self.loop = loop
        self.ticks = ticks
        self.interval = interval
        self.count = 0
        self.start = loop.time()

    def __call__(self):
        self.count += 1
        print(f'tick {self.count} at +{self.loop.time() - self.start:.3f}s', flush=True)
        if self.count < self.ticks:
            # On the grid, not "interval after now": no drift accumulates.
            self.loop.call_at(self.start + self.count * self.interval, self)
        else:
            self.loop.stop()


def run_callback_style(ticks, interval):
    loop = ferroloop.new_event_loop()
    try:
        ticker = Ticker(loop, ticks, interval)
        loop.call_soon(ticker)
        loop.run_forever()
        return ticker.count, loop.time() - ticker.start
    finally:
        loop.close()


async def ticking_task(ticks, interval):
    loop = asyncio.get_running_loop()
    start = loop.time()
    count = 0
    while True:
        count += 1
        print(f'tick {count} at +{loop.time() - start:.3f}s', flush=True)
        if count == ticks:
            return count, loop.time() - start
        # Sleep until the next grid point, however long this tick took.
        await asyncio.sleep(max(0.0, start + count * interval - loop.time()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ticks', type=int, default=5)
    parser.add_argument('--interval', type=float, default=0.1)
    parser.add_argument('--style', choices=('callback', 'task'), default='callback')
    args = parser.parse_args(argv)
    if args.ticks < 1:
        parser.error('--ticks must be at least 1')

    if args.style == 'callback':
        count, elapsed = run_callback_style(args.ticks, args.interval)
    else:
        count, elapsed = ferroloop.run(ticking_task(args.ticks, args.interval))
    print(f'done: {count} ticks in {elapsed:.3f}s', flush=True)


if __name__ == '__main__':
    main()
