"""``python -m ferroloop run --stats``: every ferroloop loop the program
makes is measured, and a summary of each goes to stderr when it ends,
leaving its stdout and exit status as they were."""

import re

import pytest

from test_run_command import ferroloop_run, program, run  # noqa: F401  (a fixture)

SLOW = '''\
import asyncio, sys, time

def fifty():
    time.sleep(0.05)

def hundred_fifty():
    time.sleep(0.15)

async def main():
    loop = asyncio.get_running_loop()
    loop.call_soon(fifty)  # FIFTY
    loop.call_soon(hundred_fifty)  # HUNDRED_FIFTY
    await asyncio.sleep(0.01)
    print('out')

asyncio.run(main())
'''


def line_of(source, marker):
    return next(i for i, text in enumerate(source.splitlines(), 1) if marker in text)


def summary(stderr):
    """The summary's lines, from its first."""
    lines = stderr.splitlines()
    start = next(i for i, text in enumerate(lines) if text.startswith('ferroloop stats'))
    return lines[start:]


def figure(lines, label, name):
    """`name`'s number of milliseconds on the line starting with `label`."""
    line = next(text for text in lines if text.strip().startswith(label))
    return float(re.search(rf'{name} ([0-9.]+) ms', line).group(1))


def test_a_slow_callback_is_listed_once_with_the_line_that_scheduled_it(tmp_path, program):
    path = program('slow.py', SLOW)
    result = ferroloop_run(['--stats', '--slow-callback-duration=0.03', 'slow.py'], tmp_path)
    assert result.returncode == 0
    lines = summary(result.stderr)
    text = '\n'.join(lines)
    assert '  slow callbacks: 2 of 30.00 ms or more, the slowest:' in lines
    # The slowest first, each once, with where it was scheduled.
    assert text.count('hundred_fifty()') == 1 and text.count('fifty()') == 2
    assert text.index('hundred_fifty()') < text.index('<Handle fifty()')
    assert text.count(f'scheduled at {path}:{line_of(SLOW, "# FIFTY")} in main') == 1
    assert text.count(f'scheduled at {path}:{line_of(SLOW, "HUNDRED_FIFTY")} in main') == 1
    durations = [float(m) for m in re.findall(r'^ +([0-9.]+) ms  <Handle', text, re.M)]
    assert len(durations) == 2
    assert durations[0] >= 150 and 50 <= durations[1] < 150


def test_the_default_threshold_is_asyncios_tenth_of_a_second(tmp_path, program):
    program('slow.py', SLOW)
    result = ferroloop_run(['--stats', 'slow.py'], tmp_path)
    text = '\n'.join(summary(result.stderr))
    assert 'slow callbacks: 1 of 100.00 ms or more, the slowest:' in text
    assert 'hundred_fifty()' in text
    assert '<Handle fifty()' not in text


def test_a_timer_held_up_by_a_blocking_callback_shows_in_the_timer_lag(tmp_path, program):
    program('late.py', '''\
        import asyncio, time

        async def main():
            loop = asyncio.get_running_loop()
            fired = loop.create_future()
            loop.call_later(0.01, fired.set_result, None)
            loop.call_soon(time.sleep, 0.1)
            loop.call_soon(print, 'queued behind the sleep')
            await fired

        asyncio.run(main())
    ''')
    result = ferroloop_run(['--stats', 'late.py'], tmp_path)
    lines = summary(result.stderr)
    # Due 10 ms in, run after the 100 ms sleep: about 90 ms late (max is exact).
    assert 85 <= figure(lines, 'timer lag', 'max') < 1000
    # The callback queued behind the sleep waited as long as it.
    assert 95 <= figure(lines, 'ready lag', 'max') < 1000
    busy = re.search(r'busy ([0-9.]+)%', '\n'.join(lines))
    assert float(busy.group(1)) > 50


def test_stdout_and_the_exit_status_stay_the_programs(tmp_path, program):
    program('ends.py', '''\
        import asyncio, sys
        print('before')
        asyncio.run(asyncio.sleep(0))
        print('after')
        sys.exit(3)
    ''')
    plain = run(['ends.py'], tmp_path)
    ours = ferroloop_run(['--stats', 'ends.py'], tmp_path)
    assert plain.returncode == ours.returncode == 3
    assert ours.stdout == plain.stdout == 'before\nafter\n'
    assert plain.stderr == ''
    assert ours.stderr.startswith('ferroloop stats, loop 1: ')


def test_each_loop_is_summarised_and_one_that_never_ran_is_counted(tmp_path, program):
    program('two.py', '''\
        import asyncio
        asyncio.run(asyncio.sleep(0))
        asyncio.run(asyncio.sleep(0))
        asyncio.new_event_loop().close()
    ''')
    result = ferroloop_run(['--stats', 'two.py'], tmp_path)
    headers = [line for line in result.stderr.splitlines() if line.startswith('ferroloop stats')]
    assert [h.split(':')[0] for h in headers] == ['ferroloop stats, loop 1 of 2',
                                                 'ferroloop stats, loop 2 of 2']
    assert result.stderr.endswith('(1 more ferroloop loop never ran)\n')


def test_bytes_connections_and_tasks_are_in_the_summary(tmp_path, program):
    program('echo.py', '''\
        import asyncio

        async def handle(reader, writer):
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(b'hello')
            assert await reader.readexactly(5) == b'hello'
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        asyncio.run(main())
    ''')
    result = ferroloop_run(['--stats', 'echo.py'], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = summary(result.stderr)
    assert '  bytes        stream 10 B read, 10 B written' in lines
    assert '  accepted     1 connection' in lines
    tasks = next(line for line in lines if line.startswith('  tasks'))
    # main, the server's handler, and asyncio.run's own.
    assert int(tasks.split()[1]) >= 2


def test_stats_with_dash_m(tmp_path, program):
    program('mod.py', 'import asyncio\nasyncio.run(asyncio.sleep(0))\nprint("ran")\n')
    result = ferroloop_run(['--stats', '-m', 'mod'], tmp_path)
    assert result.returncode == 0
    assert result.stdout == 'ran\n'
    assert result.stderr.startswith('ferroloop stats, loop 1: ')


def test_without_stats_nothing_is_summarised(tmp_path, program):
    program('slow.py', SLOW)
    result = ferroloop_run(['slow.py'], tmp_path)
    assert 'ferroloop stats' not in result.stderr


@pytest.mark.parametrize('args, message', [
    (['--slow-callback-duration=0.1', 'x.py'], '--slow-callback-duration goes with --stats'),
    (['--stats', '--slow-callback-duration=fast', 'x.py'], "expects a number of seconds, not 'fast'"),
    (['--stats', '--slow-callback-duration=-1', 'x.py'], 'must be 0 or more'),
    (['--stats', '--slow-callback-duration'], 'expects a number of seconds'),
    (['--statistics', 'x.py'], "unknown option '--statistics'"),
    (['--stats'], 'usage: python -m ferroloop run'),
])
def test_bad_options_are_refused_with_status_2(tmp_path, args, message):
    result = ferroloop_run(args, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert 'usage: python -m ferroloop run' in result.stderr


def test_help_documents_stats(tmp_path):
    result = run(['-m', 'ferroloop', 'run', '--help'], tmp_path)
    assert result.returncode == 0
    assert '--stats' in result.stdout
    assert '--slow-callback-duration=SECONDS' in result.stdout
    assert 'p50, p99 and max' in result.stdout
