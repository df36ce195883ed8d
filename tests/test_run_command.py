"""``python -m ferroloop run``: the program sees what ``python SCRIPT`` /
``python -m MODULE`` give it, and is told when ferroloop was not used."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

import ferroloop

PROBE = '''\
import sys
main = sys.modules['__main__']
print(sys.argv, __file__, sys.path[0], __name__, __spec__ and __spec__.name,
      type(__loader__).__name__, __package__, globals().get('__cached__', 'absent'),
      main is sys.modules[__name__], main.__dict__ is globals())
'''


def run(args, cwd, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, **kw)


def ferroloop_run(args, cwd, **kw):
    return run(['-m', 'ferroloop', 'run', *args], cwd, **kw)


def same_as_python(tmp_path, python_args, run_args=None):
    plain = run(python_args, tmp_path)
    ours = ferroloop_run(run_args or python_args, tmp_path)
    return plain, ours


@pytest.fixture
def program(tmp_path):
    def write(name, *parts):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(''.join(textwrap.dedent(part) for part in parts))
        return path
    return write


@pytest.mark.parametrize('how', ['relative', 'dotted', 'absolute'])
def test_a_script_sees_argv_file_and_path_as_under_python(tmp_path, program, how):
    path = program('probe.py', PROBE + 'import asyncio\nasyncio.run(asyncio.sleep(0))\n')
    given = {'relative': 'probe.py', 'dotted': './probe.py', 'absolute': str(path)}[how]
    plain, ours = same_as_python(tmp_path, [given, 'a', '--b'])
    assert plain.returncode == ours.returncode == 0
    assert ours.stdout == plain.stdout
    assert f" {tmp_path} __main__" in ours.stdout   # sys.path[0] is the script's directory
    assert ours.stderr == ''


def test_a_script_through_a_symlink_gets_the_target_directory_on_the_path(tmp_path, program):
    program('real/probe.py', PROBE + 'import asyncio\nasyncio.run(asyncio.sleep(0))\n')
    (tmp_path / 'link.py').symlink_to(tmp_path / 'real' / 'probe.py')
    plain, ours = same_as_python(tmp_path, ['link.py'])
    assert ours.stdout == plain.stdout
    assert str(tmp_path / 'real') in ours.stdout


@pytest.mark.parametrize('target', ['mod', 'pkg', 'pkg.sub'])
def test_dash_m_runs_a_module_as_python_dash_m(tmp_path, program, target):
    body = PROBE + 'import asyncio\nasyncio.run(asyncio.sleep(0))\n'
    program('mod.py', body)
    program('pkg/__init__.py', '')
    program('pkg/__main__.py', body)
    program('pkg/sub.py', body)
    plain, ours = same_as_python(tmp_path, ['-m', target, 'x', '-y'])
    assert plain.returncode == ours.returncode == 0
    assert ours.stdout == plain.stdout
    assert ours.stderr == ''


@pytest.mark.parametrize('kind', ['directory', 'zip'])
def test_a_directory_or_zip_with_a_main_runs_as_under_python(tmp_path, program, kind):
    main = program('app/__main__.py', PROBE + 'import asyncio\nasyncio.run(asyncio.sleep(0))\n')
    target = 'app'
    if kind == 'zip':
        import zipfile
        with zipfile.ZipFile(tmp_path / 'app.zip', 'w') as z:
            z.write(main, '__main__.py')
        target = 'app.zip'
    plain, ours = same_as_python(tmp_path, [target, 'x'])
    assert plain.returncode == ours.returncode == 0
    assert ours.stdout == plain.stdout
    assert ours.stderr == ''


def test_dash_m_joined_to_the_module_name(tmp_path, program):
    program('mod.py', PROBE)
    plain, ours = same_as_python(tmp_path, ['-mmod', 'x'])
    assert ours.stdout == plain.stdout


def test_an_uncaught_exception_shows_the_traceback_python_shows(tmp_path, program):
    program('boom.py', '''\
        import asyncio

        def fail(what):
            raise KeyError(what)

        asyncio.run(asyncio.sleep(0))
        fail('boom')
    ''')
    plain, ours = same_as_python(tmp_path, ['boom.py'])
    assert plain.returncode == ours.returncode == 1
    assert ours.stderr == plain.stderr


def test_a_traceback_through_the_loop_starts_at_the_programs_frame(tmp_path, program):
    program('boom.py', '''\
        import asyncio

        async def fail():
            raise KeyError('boom')

        asyncio.run(fail())
    ''')
    plain, ours = same_as_python(tmp_path, ['boom.py'])
    assert plain.returncode == ours.returncode == 1
    # The loops' own frames differ (base_events.py, ferroloop's _loop.py); the program's do not.
    first = ours.stderr.splitlines()[:3]
    assert first == plain.stderr.splitlines()[:3]
    assert first[1].startswith(f'  File "{tmp_path / "boom.py"}", line 6, in <module>')
    assert 'runpy' not in ours.stderr and '__main__.py' not in ours.stderr
    assert ours.stderr.splitlines()[-1] == "KeyError: 'boom'"


def test_a_syntax_error_is_reported_as_python_reports_it(tmp_path, program):
    program('bad.py', 'def (:\n')
    plain, ours = same_as_python(tmp_path, ['bad.py'])
    assert plain.returncode == ours.returncode == 1
    assert ours.stderr.startswith(plain.stderr)


@pytest.mark.parametrize('code, status', [
    ('sys.exit(3)', 3),
    ('sys.exit("message")', 1),
    ('raise KeyboardInterrupt', -2),
])
def test_exit_status_is_the_programs(tmp_path, program, code, status):
    program('ends.py', f'import asyncio, sys\nasyncio.run(asyncio.sleep(0))\n{code}\n')
    plain, ours = same_as_python(tmp_path, ['ends.py'])
    assert plain.returncode == ours.returncode == status
    assert ours.stderr == plain.stderr


def test_a_missing_script_is_reported_as_python_reports_it(tmp_path):
    plain, ours = same_as_python(tmp_path, ['missing.py'])
    assert plain.returncode == ours.returncode == 2
    assert ours.stderr.splitlines()[0] == plain.stderr.splitlines()[0]


def test_help_describes_both_forms_and_exits_0(tmp_path):
    for args in (['--help'], ['run', '--help'], ['run', '-h']):
        result = run(['-m', 'ferroloop', *args], tmp_path)
        assert result.returncode == 0
        assert 'python -m ferroloop run SCRIPT' in result.stdout
        assert 'python -m ferroloop run -m MODULE' in result.stdout


def test_without_a_program_the_usage_goes_to_stderr_with_status_2(tmp_path):
    result = run(['-m', 'ferroloop'], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith('usage: python -m ferroloop run')


LOOP_TYPE = '''\
import asyncio

async def main():
    loop = type(asyncio.get_running_loop())
    print(f'{loop.__module__}.{loop.__qualname__}')
'''


def test_a_program_on_asyncios_defaults_runs_on_ferroloop_and_hears_nothing(tmp_path, program):
    program('defaults.py', LOOP_TYPE + 'asyncio.run(main())\n')
    result = ferroloop_run(['defaults.py'], tmp_path)
    assert result.returncode == 0
    assert result.stdout == 'ferroloop.Loop\n'
    assert result.stderr == ''


def test_a_program_building_its_own_loop_is_told_ferroloop_was_not_used(tmp_path, program):
    program('own.py', LOOP_TYPE, '''\
        loop = asyncio.SelectorEventLoop()
        loop.run_until_complete(main())
        loop.close()
    ''')
    result = ferroloop_run(['own.py'], tmp_path)
    assert result.returncode == 0
    assert result.stdout == 'asyncio.unix_events._UnixSelectorEventLoop\n'
    assert result.stderr.startswith(
        'ferroloop was not used: it ran asyncio.unix_events._UnixSelectorEventLoop, '
        'a loop it built itself.\n')
    assert 'loop_factory=ferroloop.new_event_loop' in result.stderr


def test_a_program_running_no_loop_is_told_so(tmp_path, program):
    program('plain.py', 'print("no asyncio here")\n')
    result = ferroloop_run(['plain.py'], tmp_path)
    assert result.stdout == 'no asyncio here\n'
    assert result.stderr == ('ferroloop was not used: the program ran no asyncio '
                             'event loop in this process.\n')


def test_a_child_interpreter_that_used_ferroloop_counts(tmp_path, program):
    """A worker pool of fresh interpreters (multiprocessing's spawn) using ferroloop."""
    program('pool.py', LOOP_TYPE, '''\
        import multiprocessing
        import ferroloop

        def work():
            ferroloop.run(main())

        if __name__ == '__main__':
            child = multiprocessing.get_context('spawn').Process(target=work)
            child.start()
            child.join()
    ''')
    result = ferroloop_run(['pool.py'], tmp_path)
    assert result.returncode == 0
    assert result.stdout == 'ferroloop.Loop\n'
    assert result.stderr == ''


def test_a_forked_child_that_used_the_stdlib_loop_is_named(tmp_path, program):
    program('forks.py', LOOP_TYPE, '''\
        import os
        pid = os.fork()
        if pid == 0:
            loop = asyncio.SelectorEventLoop()
            loop.run_until_complete(main())
            loop.close()
            os._exit(0)
        os.waitpid(pid, 0)
    ''')
    result = ferroloop_run(['forks.py'], tmp_path)
    assert result.returncode == 0
    assert 'ferroloop was not used: it ran asyncio.unix_events._UnixSelectorEventLoop' in result.stderr


def test_the_notice_is_printed_once_with_forked_children(tmp_path, program):
    program('forks.py', LOOP_TYPE, '''\
        import os, sys
        pid = os.fork()
        if pid == 0:
            sys.exit(0)   # runs atexit handlers in the child too
        os.waitpid(pid, 0)
    ''')
    result = ferroloop_run(['forks.py'], tmp_path)
    assert result.stderr.count('ferroloop was not used') == 1


def test_no_report_file_is_left_behind(tmp_path, program):
    program('defaults.py', LOOP_TYPE + 'asyncio.run(main())\n')
    env = dict(os.environ, TMPDIR=str(tmp_path))
    ferroloop_run(['defaults.py'], tmp_path, env=env)
    assert not [p for p in os.listdir(tmp_path) if re.match('ferroloop-run-', p)]


def test_a_child_outliving_the_report_creates_no_file(tmp_path, monkeypatch):
    from ferroloop import _usage_report
    gone = tmp_path / 'ferroloop-run-gone'
    monkeypatch.setattr(_usage_report, 'PATH', str(gone))
    loop = ferroloop.new_event_loop()
    try:
        _usage_report.record(loop)
    finally:
        loop.close()
    assert not gone.exists()
