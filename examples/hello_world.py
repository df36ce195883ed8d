"""Hello world with callbacks: ``call_soon`` queues, ``stop`` ends ``run_forever``.

The smallest program an event loop runs: no coroutines, no I/O, just
callbacks in the order they were scheduled. ``loop.stop()`` does not cut the
current iteration short: callbacks already queued when it is called still run
in that iteration, and ``run_forever()`` returns afterwards.

    python examples/hello_world.py
    python examples/hello_world.py --name ferroloop
"""

import argparse

import ferroloop


def greet(greeting, name, log):
    log.append(f'{greeting} {name}')
    print(log[-1], flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--name', default='World')
    args = parser.parse_args(argv)

    log = []
    loop = ferroloop.new_event_loop()
    try:
        loop.call_soon(greet, 'Hello', args.name, log)
        loop.call_soon(loop.stop)
        # Queued before stop() ran, so it still runs in the same iteration.
        loop.call_soon(greet, 'Goodbye', args.name, log)
        print('run_forever: start', flush=True)
        loop.run_forever()
        print(f'run_forever: returned after {len(log)} callbacks', flush=True)
    finally:
        loop.close()
    print(f'loop closed: {loop.is_closed()}', flush=True)


if __name__ == '__main__':
    main()
