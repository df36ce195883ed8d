"""Runs CPython's test_asyncio against ferroloop and checks the expected passes.

    python -m compat [--modules test_tasks,test_locks] [--loop ferroloop|asyncio]
                     [--update [--allow-shrink]] [-j N] [--timeout S] [--test-timeout S]

Each module runs in a worker subprocess of its own (``worker.py``), which
streams one event per test to a file. When a test hangs (no progress for
``--test-timeout`` seconds) or the worker crashes, the running test is recorded
as "timeout" / "crash" and the module runs again without the tests already
done. ``--timeout`` bounds the whole module, all attempts together.

Counted: tests that ran on the loop under test or on no loop at all. Not
counted, reported apart: out of scope (``out_of_scope.txt``), replaced
(stdlib-selector classes swapped for a ferroloop class, see ``adapt.py``) and
stdlib (the test only ever ran a stdlib loop, e.g. test_utils.TestLoop).

The run writes compat/results/<loop>-<time>.json and latest-<loop>.json, and
exits 1 when a test of the expected-pass list (``expected-<python>.txt``) ran
and did not pass; a test that fails is run once more on its own first, and
one that passes then is reported as flaky, not as a regression.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, 'worker.py')
RESULTS_DIR = os.path.join(HERE, 'results')
OUT_OF_SCOPE = os.path.join(HERE, 'out_of_scope.txt')
PY = f'{sys.version_info[0]}.{sys.version_info[1]}'
EXPECTED = os.path.join(HERE, f'expected-{PY}.txt')

# The slowest modules, for ordering when no earlier run says better.
SLOW_FIRST = ('test_events', 'test_tasks', 'test_subprocess', 'test_ssl',
              'test_streams', 'test_sslproto', 'test_base_events', 'test_sendfile')

OUTCOMES = ('pass', 'fail', 'error', 'skip', 'expected-failure',
            'unexpected-success', 'timeout', 'crash')
COLUMNS = (('pass', 'pass'), ('fail', 'fail'), ('error', 'error'), ('skip', 'skip'),
           ('xfail', 'expected-failure'), ('xpass', 'unexpected-success'),
           ('t/o', 'timeout'), ('crash', 'crash'))
LOG_TAIL = 6000


def all_modules():
    import test.test_asyncio as pkg
    return sorted(n[:-3] for n in os.listdir(os.path.dirname(pkg.__file__))
                  if n.startswith('test_') and n.endswith('.py'))


def _durations_path(loop):
    return os.path.join(RESULTS_DIR, f'durations-{loop}.json')


def read_durations(loop):
    try:
        with open(_durations_path(loop), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def slowest_first(names, loop):
    """Orders modules by their duration in the last run (else SLOW_FIRST), so
    that with -j 2 the long ones start at once and overlap."""
    last = read_durations(loop)
    default = {n: len(SLOW_FIRST) - i for i, n in enumerate(SLOW_FIRST)}
    return sorted(names, key=lambda n: -last.get(n, default.get(n, 0)))


def parse_modules(text):
    if not text:
        return all_modules()
    names = []
    for name in text.split(','):
        name = name.strip()
        if name:
            names.append(name if name.startswith('test_') else 'test_' + name)
    return names


def read_expected(path=EXPECTED):
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        return {line.strip() for line in f if line.strip() and not line.startswith('#')}


def write_expected(ids, path=EXPECTED):
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f'# Tests of CPython {PY} test_asyncio that pass on ferroloop and must keep\n'
                f'# passing. Written by `python -m compat --update`; the list only grows.\n')
        for test_id in sorted(ids):
            f.write(test_id + '\n')


def _tail(path, limit=LOG_TAIL):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


# -- one module ------------------------------------------------------------------

class ModuleRun:
    """Runs one module, in as many worker attempts as hangs and crashes need."""

    def __init__(self, name, args, only=None, log=print):
        self.name = name
        self.args = args
        self.only = only            # run just these ids (the flaky re-check)
        self.log = log
        self.collected = None       # [[id, category, note]]
        self.tests = {}             # id -> record
        self.module_error = None
        self.module_skip = None
        self.attempts = 0
        self.duration = 0.0

    def run(self):
        t0 = time.monotonic()
        deadline = t0 + self.args.timeout
        with tempfile.TemporaryDirectory(prefix=f'compat-{self.name}-') as tmp:
            while True:
                self.attempts += 1
                status = self._attempt(tmp, deadline)
                if status == 'done':
                    break
                remaining = self._remaining()
                if not remaining:
                    break
                if status == 'stuck':
                    outcome, why = 'timeout', 'the module hung outside any test'
                elif time.monotonic() >= deadline:
                    outcome, why = 'timeout', f'the module ran out of time ({self.args.timeout:g} s)'
                elif self.attempts >= self.args.max_attempts:
                    outcome, why = 'crash', f'{self.attempts} workers hung or died'
                else:
                    continue
                for test_id in remaining:
                    self.tests[test_id] = {'outcome': outcome, 'loop': 'none',
                                           'time': 0, 'message': f'not run: {why}'}
                break
        self.duration = time.monotonic() - t0
        return self

    def _remaining(self):
        if self.collected is None:
            return []
        ids = [t[0] for t in self.collected if t[1] == 'run' and t[0] not in self.tests]
        if self.only is not None:
            ids = [i for i in ids if i in self.only]
        return ids

    def _attempt(self, tmp, deadline):
        """One worker process. Returns 'done', 'again' (a test hung or crashed,
        the rest still to run) or 'stuck' (hung with no test running)."""
        n = self.attempts
        events_path = os.path.join(tmp, f'events-{n}.jsonl')
        log_path = os.path.join(tmp, f'log-{n}.txt')
        exclude_path = os.path.join(tmp, f'exclude-{n}.txt')
        with open(exclude_path, 'w') as f:
            f.write('\n'.join(self.tests))
        cmd = [sys.executable, WORKER, '--module', self.name, '--loop', self.args.loop,
               '--events', events_path, '--exclude', exclude_path,
               '--out-of-scope', OUT_OF_SCOPE,
               '--short-timeout', str(self.args.short_timeout)]
        if self.only is not None:
            only_path = os.path.join(tmp, 'only.txt')
            with open(only_path, 'w') as f:
                f.write('\n'.join(self.only))
            cmd += ['--only', only_path]
        env = dict(os.environ, PYTHONFAULTHANDLER='1')
        env.pop('PYTHONASYNCIODEBUG', None)
        with open(log_path, 'wb') as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        state = {'current': None, 'finished': False}
        killed = None
        last_progress = time.monotonic()
        offset = 0
        while True:
            exited = proc.poll() is not None
            offset, events = self._read_events(events_path, offset)
            if events:
                last_progress = time.monotonic()
                self._take(events, state)
            if exited:
                break
            now = time.monotonic()
            if now - last_progress > self.args.test_timeout or now > deadline:
                killed = (f'no progress for {self.args.test_timeout:g} s'
                          if now <= deadline else
                          f'the module ran out of time ({self.args.timeout:g} s)')
                self._kill(proc)
                self._take(self._read_events(events_path, offset)[1], state)
                break
            time.sleep(0.05)
        proc.wait()
        current = state['current']
        if state['finished']:
            return 'done'
        if self.collected is None:
            # Died or hung before it listed the tests: nothing to retry around.
            self.module_error = (f'worker {"hung" if killed else "exited"} '
                                 f'(status {proc.returncode}) before listing the tests\n'
                                 + _tail(log_path))
            return 'done'
        if current is None:
            if killed:
                return 'stuck'
            # Exited between tests: the next attempt goes on from there.
            return 'again'
        outcome = 'timeout' if killed else 'crash'
        what = killed or f'worker exited with status {proc.returncode}'
        self.tests[current] = {'outcome': outcome, 'loop': 'none', 'time': 0,
                               'message': f'{what}; worker log tail:\n{_tail(log_path)}'}
        self.log(f'  {self.name}: {outcome}: {current} ({what})')
        return 'again'

    def _take(self, events, state):
        for ev in events:
            kind = ev['ev']
            if kind == 'collected':
                if self.collected is None:
                    self.collected = ev['tests']
            elif kind == 'start':
                state['current'] = ev['id']
            elif kind == 'end':
                self.tests[ev['id']] = {k: ev[k] for k in ('outcome', 'loop', 'time', 'message')}
                state['current'] = None
            elif kind == 'module_error':
                self.module_error = ev['message']
            elif kind == 'module_skip':
                self.module_skip = ev['message']
            elif kind == 'finished':
                state['finished'] = True

    @staticmethod
    def _read_events(path, offset):
        try:
            with open(path, 'rb') as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return offset, []
        end = data.rfind(b'\n') + 1       # a half-written last line waits
        events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        return offset + end, events

    @staticmethod
    def _kill(proc):
        try:
            os.kill(proc.pid, signal.SIGUSR1)   # faulthandler: stacks into the log
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- classification ------------------------------------------------------

    def records(self):
        """{id: record with 'counted'}: every collected test plus fixture errors."""
        out = {}
        for test_id, category, note in self.collected or ():
            if category != 'run':
                out[test_id] = {'outcome': None, 'category': category, 'message': note,
                                'counted': False}
        for test_id, rec in self.tests.items():
            rec = dict(rec)
            rec['category'] = 'stdlib' if rec['loop'] == 'stdlib' else 'run'
            rec['counted'] = rec['category'] == 'run'
            out[test_id] = rec
        return out


def _counts(records):
    counts = dict.fromkeys(OUTCOMES, 0)
    other = {'stdlib': 0, 'out_of_scope': 0, 'replaced': 0}
    for rec in records.values():
        if rec['counted']:
            counts[rec['outcome']] += 1
        else:
            other[rec['category']] += 1
    return counts, other


def summary_lines(modules):
    head = (f'{"module":<24}' + ''.join(f'{c:>7}' for c, _ in COLUMNS)
            + f' |{"stdlib":>7}{"oos":>5}{"repl":>5} |{"time":>7}')
    lines = [head, '-' * len(head)]
    total = dict.fromkeys(OUTCOMES, 0)
    total_other = {'stdlib': 0, 'out_of_scope': 0, 'replaced': 0}
    for name, data in modules.items():
        counts, other = _counts(data['tests'])
        for k in total:
            total[k] += counts[k]
        for k in total_other:
            total_other[k] += other[k]
        note = ('  MODULE ERROR' if data.get('module_error') else
                f'  skipped: {data["module_skip"]}' if data.get('module_skip') else '')
        lines.append(f'{name:<24}' + ''.join(f'{counts[o]:>7}' for _, o in COLUMNS)
                     + f' |{other["stdlib"]:>7}{other["out_of_scope"]:>5}'
                     f'{other["replaced"]:>5} |{data["duration"]:>6.1f}s{note}')
    lines.append('-' * len(head))
    lines.append(f'{"TOTAL":<24}' + ''.join(f'{total[o]:>7}' for _, o in COLUMNS)
                 + f' |{total_other["stdlib"]:>7}{total_other["out_of_scope"]:>5}'
                 f'{total_other["replaced"]:>5} |')
    return lines


def first_line(message):
    lines = [l for l in (message or '').splitlines() if l.strip()]
    # The exception line of a traceback, else the first line.
    for line in reversed(lines):
        if not line.startswith(' ') and ('Error' in line or 'Exception' in line):
            return line.strip()[:200]
    return (lines[0].strip() if lines else '')[:200]


# -- the whole run -----------------------------------------------------------------

def run_modules(names, args, only=None, quiet=False):
    """{module: ModuleRun}, running up to args.jobs modules at a time."""
    lock = threading.Lock()

    def log(msg):
        if not quiet:
            with lock:
                print(msg, flush=True)

    def one(name):
        mod_only = None if only is None else only.get(name, set())
        run = ModuleRun(name, args, only=mod_only, log=log).run()
        counts, _ = _counts(run.records())
        err = ' MODULE ERROR' if run.module_error else ''
        log(f'  done {name:<22} {counts["pass"]:>4} pass, '
            f'{counts["fail"] + counts["error"]:>4} fail/error, '
            f'{counts["timeout"] + counts["crash"]:>3} timeout/crash  '
            f'({run.duration:.1f}s, {run.attempts} attempt(s)){err}')
        return run

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, names))
    return {r.name: r for r in runs}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m compat', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--modules', help='comma-separated test_asyncio modules '
                        '(default: all); the "test_" prefix is optional')
    parser.add_argument('--loop', choices=('ferroloop', 'asyncio'), default='ferroloop',
                        help='loop under test; "asyncio" runs the harness on the '
                             'stdlib loop, as a check of the harness itself')
    parser.add_argument('--update', action='store_true',
                        help=f'add this run\'s passes to {os.path.basename(EXPECTED)}')
    parser.add_argument('--allow-shrink', action='store_true',
                        help='let --update drop expected passes that did not pass')
    parser.add_argument('-j', '--jobs', type=int, default=min(2, os.cpu_count() or 1),
                        help='modules run at the same time (default: %(default)s)')
    parser.add_argument('--timeout', type=float, default=300,
                        help='seconds per module, all attempts (default: %(default)s)')
    parser.add_argument('--test-timeout', type=float, default=20,
                        help='seconds without progress before the running test is '
                             'a timeout (default: %(default)s)')
    parser.add_argument('--short-timeout', type=float, default=10,
                        help='test.support.SHORT_TIMEOUT in the workers '
                             '(default: %(default)s)')
    parser.add_argument('--max-attempts', type=int, default=25,
                        help='worker restarts per module (default: %(default)s)')
    parser.add_argument('--no-recheck', action='store_true',
                        help='do not run failing expected passes a second time')
    parser.add_argument('--expected', default=EXPECTED,
                        help='expected-pass list (default: %(default)s)')
    parser.add_argument('--results', help='results JSON path (default: '
                        'compat/results/<loop>-<time>.json)')
    parser.add_argument('--show-failures', action='store_true',
                        help='list every counted test that did not pass, with its error')
    args = parser.parse_args(argv)
    if args.update and args.loop != 'ferroloop':
        parser.error('--update records ferroloop passes; use --loop ferroloop')

    names = parse_modules(args.modules)
    known = set(all_modules())
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f'unknown module(s): {", ".join(unknown)}')

    started = datetime.datetime.now()
    print(f'compat: {len(names)} module(s) of test_asyncio on {args.loop}, '
          f'Python {platform.python_version()}, -j {args.jobs}', flush=True)
    t0 = time.monotonic()
    runs = run_modules(slowest_first(names, args.loop), args)

    modules = {}
    for name in names:
        run = runs[name]
        modules[name] = {'duration': round(run.duration, 2), 'attempts': run.attempts,
                         'module_error': run.module_error,
                         'module_skip': run.module_skip, 'tests': run.records()}

    expected = read_expected(args.expected) if args.loop == 'ferroloop' else None
    regressions, flaky = {}, {}
    if expected is not None:
        regressions = find_regressions(expected, modules)
        if regressions and not args.no_recheck:
            print(f'compat: running {len(regressions)} failing expected pass(es) again',
                  flush=True)
            by_module = {}
            for test_id in regressions:
                by_module.setdefault(test_id.split('.')[0], set()).add(test_id)
            again = run_modules(sorted(by_module), args, only=by_module, quiet=True)
            for test_id in list(regressions):
                rec = again[test_id.split('.')[0]].records().get(test_id)
                if rec is not None and rec.get('outcome') == 'pass':
                    flaky[test_id] = regressions.pop(test_id)
                    modules[test_id.split('.')[0]]['tests'][test_id]['recheck'] = 'pass'
    elapsed = time.monotonic() - t0

    result = {
        'loop': args.loop, 'python': platform.python_version(),
        'started': started.isoformat(timespec='seconds'), 'duration': round(elapsed, 1),
        'argv': sys.argv[1:] if argv is None else argv,
        'modules': modules,
        'regressions': sorted(regressions), 'flaky': sorted(flaky),
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = args.results or os.path.join(
        RESULTS_DIR, f'{args.loop}-{started.strftime("%Y%m%d-%H%M%S")}.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1, sort_keys=True)
    durations = read_durations(args.loop)
    durations.update({name: data['duration'] for name, data in modules.items()})
    with open(_durations_path(args.loop), 'w', encoding='utf-8') as f:
        json.dump(durations, f, indent=1, sort_keys=True)
    if not args.results:
        with open(os.path.join(RESULTS_DIR, f'latest-{args.loop}.json'), 'w',
                  encoding='utf-8') as f:
            json.dump(result, f, indent=1, sort_keys=True)

    print()
    for line in summary_lines(modules):
        print(line)
    print(f'(counted: ran on the loop under test or on no loop; not counted: '
          f'stdlib = ran only a stdlib loop, oos = out_of_scope.txt, '
          f'repl = stdlib-selector classes replaced by a ferroloop class)')
    for name, data in modules.items():
        if data['module_error']:
            print(f'\nMODULE ERROR {name}:\n{data["module_error"]}')
    if args.show_failures:
        print('\nCounted tests that did not pass:')
        for name, data in modules.items():
            for test_id, rec in sorted(data['tests'].items()):
                if rec['counted'] and rec['outcome'] not in ('pass', 'skip',
                                                             'expected-failure'):
                    print(f'  {rec["outcome"]:<8} {test_id}: {first_line(rec["message"])}')
    print(f'\nresults: {os.path.relpath(path)}   time: {elapsed:.1f}s')

    status = 0
    if args.loop == 'ferroloop':
        if expected is None:
            print(f'no {os.path.relpath(args.expected)}: nothing to check against')
        else:
            for test_id, why in sorted(flaky.items()):
                print(f'FLAKY (failed, then passed on its own): {test_id}: {why}')
            if regressions:
                print(f'\nREGRESSIONS: {len(regressions)} expected pass(es) did not pass:')
                for test_id, why in sorted(regressions.items()):
                    print(f'  {test_id}: {why}')
                status = 1
            else:
                n = sum(1 for t in expected if t.split('.')[0] in modules)
                print(f'expected passes: all {n} in the selected modules passed')
        if args.update:
            status = update_expected(expected or set(), modules, args.allow_shrink,
                                     args.expected) or status
    return status


def find_regressions(expected, modules):
    """{id: why} for expected passes of the selected modules that did not pass."""
    regressions = {}
    for test_id in expected:
        name = test_id.split('.')[0]
        if name not in modules:
            continue
        rec = modules[name]['tests'].get(test_id)
        if rec is None:
            why = 'missing: ' + (first_line(modules[name]['module_error'])
                                 if modules[name]['module_error'] else 'not collected')
        elif not rec['counted']:
            why = f'not counted any more ({rec["category"]})'
        elif rec['outcome'] != 'pass':
            why = f'{rec["outcome"]}: {first_line(rec["message"])}'
        else:
            continue
        regressions[test_id] = why
    return regressions


def update_expected(expected, modules, allow_shrink, path=EXPECTED):
    passes = {test_id for data in modules.values()
              for test_id, rec in data['tests'].items()
              if rec['counted'] and (rec['outcome'] == 'pass' or rec.get('recheck') == 'pass')}
    dropped = {t for t in expected if t.split('.')[0] in modules and t not in passes}
    if dropped and not allow_shrink:
        print(f'\n--update refused: {len(dropped)} expected pass(es) would be dropped '
              f'(give --allow-shrink to drop them):')
        for test_id in sorted(dropped):
            print(f'  {test_id}')
        return 1
    new = (expected - dropped) | passes
    write_expected(new, path)
    print(f'\n{os.path.relpath(path)}: {len(new)} expected passes '
          f'({len(new - expected)} added, {len(dropped)} dropped)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
