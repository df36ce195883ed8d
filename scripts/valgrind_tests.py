"""Runs ferroloop's test suite under valgrind memcheck and reports memory errors in ferroloop.

    python3 scripts/valgrind_tests.py [--build] [--children] [--keep DIR] [PYTEST ARGS...]

--build first reinstalls ferroloop from this checkout with line tables (the
same release code, so reports name src/*.rs lines). --children runs every
Python process the tests start (examples, servers, subprocesses) under
valgrind too, not only the test process (other programs -- openssl, cat,
sh -- never): thorough, and several times slower. CPython's own
test_asyncio (tests/test_compat.py) is left out unless named in PYTEST ARGS:
under valgrind it takes hours.

An error counts when one of its stacks (where it happened, where the block
was allocated, where it was freed) reaches ferroloop's extension module
before it reaches the Python interpreter: ferroloop's code did it, or asked
for it directly. Those are printed whole; the exit status is 1 if there is
any. Other errors are counted but not reported: inside CPython, OpenSSL or
libc, or in Python code that merely ran under the loop (every callback's
stack passes through ferroloop's run loop further down). Test failures (timeouts under a 20-50x
slowdown) are printed but do not decide the exit status.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A frame of ferroloop's shared object: by object file, or by Rust symbol
# (the crate's library is called _ferroloop).
FERROLOOP_FRAME = re.compile(r'_ferroloop[.:]|/src/[a-z_]+\.rs:|\([a-z_]+\.rs:\d+\)')
PID_PREFIX = re.compile(r'^==\d+== ?')
FRAME = re.compile(r'^\s*(at|by) 0x')
# Where a stack leaves native code for the interpreter: frames below this
# are whatever Python code was running, not the code that erred.
INTERPRETER = re.compile(r'_PyEval_EvalFrame|_PyEval_Vector|PyObject_Vectorcall|_PyObject_MakeTpCall|'
                         r'_PyObject_Call|PyObject_Call\b|method_vectorcall|cfunction_vectorcall|'
                         r'cfunction_call|slot_tp_|vectorcall_method')


def stacks(record):
    """The record's stacks (lists of frame lines), each cut where the interpreter starts."""
    out, current, cut = [], [], False
    for line in record:
        if FRAME.match(line):
            if not cut and INTERPRETER.search(line):
                cut = True
            if not cut:
                current.append(line)
        else:
            if current:
                out.append(current)
            current, cut = [], False
    if current:
        out.append(current)
    return out


def is_ferroloops(record):
    return any(FERROLOOP_FRAME.search(line) for stack in stacks(record) for line in stack)


def error_records(log_text):
    """The error records of one valgrind log: lists of lines, blank-line separated."""
    records, current = [], []
    in_errors = False
    for raw in log_text.splitlines():
        line = PID_PREFIX.sub('', raw)
        if not in_errors:
            # The preamble ends with the "Command:" / "Parent PID:" block.
            if line.startswith('Parent PID:') or line.startswith('Command:'):
                in_errors = True
            continue
        if line.startswith('HEAP SUMMARY:') or line.startswith('ERROR SUMMARY:'):
            break
        if line.strip():
            current.append(line)
        elif current:
            records.append(current)
            current = []
    if current:
        records.append(current)
    # Keep real errors, not notes like "Warning: set address range perms".
    return [r for r in records if re.match(r'(Invalid|Conditional|Use of uninit|Syscall param|'
                                           r'Mismatched|Source and destination|Argument|'
                                           r'Process terminating|Jump to)', r[0])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--build', action='store_true', help='reinstall ferroloop with line tables first')
    parser.add_argument('--children', action='store_true', help='also run the Python processes the tests start under valgrind')
    parser.add_argument('--keep', metavar='DIR', help='write the valgrind logs to DIR and keep them')
    args, pytest_args = parser.parse_known_args()

    if subprocess.run(['which', 'valgrind'], capture_output=True).returncode:
        sys.exit('valgrind is not installed (apt-get install valgrind)')
    if args.build:
        env = dict(os.environ, CARGO_PROFILE_RELEASE_DEBUG='line-tables-only')
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--force-reinstall', '--no-deps', ROOT],
                       env=env, check=True)

    logs = args.keep or tempfile.mkdtemp(prefix='ferroloop-valgrind-')
    os.makedirs(logs, exist_ok=True)
    if not pytest_args:
        pytest_args = ['tests', '--ignore=tests/test_compat.py']
    env = dict(os.environ,
               PYTHONMALLOC='malloc',          # pymalloc's arenas hide use-after-free from memcheck
               PYTHONFAULTHANDLER='1')
    command = ['valgrind', '--tool=memcheck', f'--trace-children={"yes" if args.children else "no"}',
               '--trace-children-skip=*/openssl,*/cat,*/sh,*/bash,*/true,*/sleep,*/env,*/echo,*/wrk',
               '--error-limit=no', '--num-callers=40', '--leak-check=no',
               f'--log-file={logs}/vg.%p.log',
               sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *pytest_args]
    print('+', ' '.join(command), flush=True)
    tests = subprocess.run(command, cwd=ROOT, env=env)

    ours, others, processes = [], 0, 0
    for path in sorted(glob.glob(os.path.join(logs, 'vg.*.log'))):
        processes += 1
        with open(path, encoding='utf-8', errors='replace') as f:
            for record in error_records(f.read()):
                if is_ferroloops(record):
                    ours.append((path, record))
                else:
                    others += 1
    for path, record in ours:
        print(f'\n--- {os.path.basename(path)}')
        print('\n'.join(record))
    print(f'\nvalgrind: {processes} processes, {len(ours)} errors in ferroloop, '
          f'{others} elsewhere; pytest exit status {tests.returncode}; logs in {logs}')
    sys.exit(1 if ours else 0)


if __name__ == '__main__':
    main()
