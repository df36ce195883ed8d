"""CPython's own test_asyncio on ferroloop: no expected pass may regress.

The runner is compat/run.py (``python -m compat``); the expected passes are in
compat/expected-<python>.txt. FERROLOOP_COMPAT_MODULES=test_tasks,test_locks
limits the full check to some modules.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = f'{sys.version_info[0]}.{sys.version_info[1]}'
EXPECTED = os.path.join(ROOT, 'compat', f'expected-{PY}.txt')

try:
    import test.test_asyncio  # noqa: F401  (some distributions strip the test suite)
except ImportError:
    pytest.skip("this Python has no test.test_asyncio", allow_module_level=True)


def run_compat(*args, env=None, timeout=900):
    return subprocess.run(
        [sys.executable, '-m', 'compat', *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def load(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def outcome(results, test_id):
    return results['modules'][test_id.split('.')[0]]['tests'][test_id]['outcome']


@pytest.mark.skipif(not os.path.exists(EXPECTED), reason=f'no expected passes for Python {PY}')
def test_no_expected_pass_of_cpython_test_asyncio_regressed(tmp_path):
    args = ['--results', str(tmp_path / 'results.json')]
    modules = os.environ.get('FERROLOOP_COMPAT_MODULES')
    if modules:
        args += ['--modules', modules]
    proc = run_compat(*args)
    assert proc.returncode == 0, proc.stdout[-20000:]


def test_harness_on_the_stdlib_loop_passes_everything_it_counts(tmp_path):
    # The adaptations (ferroloop classes for selector classes, real loops for
    # TestLoop stand-ins, the policy swap) must not break the stdlib's own
    # tests: any counted failure here is a harness bug, not a ferroloop one.
    path = tmp_path / 'results.json'
    proc = run_compat('--loop', 'asyncio', '--modules', 'futures,events,runners,pep492',
                      '--results', str(path))
    assert proc.returncode == 0, proc.stdout[-20000:]
    bad = {test_id: rec['outcome']
           for module in load(path)['modules'].values()
           for test_id, rec in module['tests'].items()
           if rec['counted'] and rec['outcome'] not in ('pass', 'skip', 'expected-failure')}
    assert bad == {}, proc.stdout[-20000:]


def test_hung_and_crashed_tests_are_recorded_and_the_module_goes_on(tmp_path):
    hang = 'test_threads.ToThreadTests.test_to_thread_args_kwargs'
    crash = 'test_threads.ToThreadTests.test_to_thread_concurrent'
    env = dict(os.environ, COMPAT_FAULT_HANG=hang, COMPAT_FAULT_CRASH=crash)
    path = tmp_path / 'results.json'
    expected = tmp_path / 'expected.txt'
    expected.write_text(f'{hang}\n{crash}\ntest_threads.ToThreadTests.test_to_thread\n')
    proc = run_compat('--modules', 'threads', '--test-timeout', '3', '--no-recheck',
                      '--expected', str(expected), '--results', str(path), env=env)
    results = load(path)
    assert outcome(results, hang) == 'timeout'
    assert outcome(results, crash) == 'crash'
    # Every other test still ran, in later worker processes.
    tests = results['modules']['test_threads']['tests']
    assert len(tests) >= 5
    assert all(rec['outcome'] == 'pass' for test_id, rec in tests.items()
               if test_id not in (hang, crash))
    assert proc.returncode == 1
    assert sorted(results['regressions']) == sorted([hang, crash])


def test_update_adds_passes_and_refuses_to_drop_one_without_allow_shrink(tmp_path):
    expected = tmp_path / 'expected.txt'
    expected.write_text('test_threads.NoSuchClass.test_gone\n')
    common = ('--modules', 'threads', '--expected', str(expected),
              '--results', str(tmp_path / 'results.json'))
    proc = run_compat(*common, '--update')
    assert proc.returncode == 1
    assert 'refused' in proc.stdout
    assert expected.read_text() == 'test_threads.NoSuchClass.test_gone\n'

    proc = run_compat(*common, '--update', '--allow-shrink')
    ids = [l for l in expected.read_text().splitlines() if not l.startswith('#')]
    assert 'test_threads.NoSuchClass.test_gone' not in ids
    assert 'test_threads.ToThreadTests.test_to_thread' in ids
    assert ids == sorted(ids)
