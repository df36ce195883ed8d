"""Concurrency without threads: tasks that sleep at the same time under ``gather``.

Each task sleeps for its own delay and reports when it woke up. Run one after
another they would take the *sum* of the delays; under ``asyncio.gather`` they
all wait together on one loop, so the whole run takes about the *longest*
delay, and they finish shortest-first whatever order they were started in.

Prints one ``task NAME slept D.DDDs, done at +T.TTTs`` line per task as it
finishes, the results in gather's (argument) order, then a summary line
``total T.TTTs; longest D.DDDs; sum S.SSSs``.

    python examples/gather_sleep.py
    python examples/gather_sleep.py --delays 0.3 0.1 0.2
"""

import argparse
import asyncio
import time

import ferroloop


async def sleeper(name, delay, start):
    await asyncio.sleep(delay)
    print(f'task {name} slept {delay:.3f}s, done at +{time.monotonic() - start:.3f}s',
          flush=True)
    return name


async def main_async(delays):
    start = time.monotonic()
    names = [chr(ord('a') + i) for i in range(len(delays))]
    results = await asyncio.gather(*(sleeper(n, d, start) for n, d in zip(names, delays)))
    total = time.monotonic() - start
    print(f'gather results: {" ".join(results)}', flush=True)
    print(f'total {total:.3f}s; longest {max(delays):.3f}s; sum {sum(delays):.3f}s',
          flush=True)
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--delays', type=float, nargs='+', default=[0.5, 0.2, 0.4, 0.1, 0.3],
                        help='seconds each task sleeps (at most 26 tasks)')
    args = parser.parse_args(argv)
    if not 1 <= len(args.delays) <= 26:
        parser.error('give between 1 and 26 delays')
    ferroloop.run(main_async(args.delays))


if __name__ == '__main__':
    main()
