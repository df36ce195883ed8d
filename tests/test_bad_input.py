"""Bad input answered as asyncio answers it.

bad_input_table.py calls every public method of the loop, the Server and
each transport kind with wrong values and in wrong states, once on the stdlib
loop and once on ferroloop, each in a process of its own. Here the outcomes
are compared: where both raise at once (from the call, or from awaiting what
it returned), the exception's type and message; whether a call raises at all;
what reached the exception handler. Every other difference must be listed in
DELIBERATE with its reason (the README's differences section says the same).
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

TABLE = Path(__file__).with_name('bad_input_table.py')
RUN_TIMEOUT = 600

# Outcomes where a call raised at once; 'died' (the loop's run failed later),
# 'ok', 'pending' and 'timeout' are not.
AT_ONCE = ('raise', 'await')

# (case id pattern, the Pythons whose asyncio differs there (from, before),
# why ferroloop answers differently on purpose).
DELIBERATE = [
    (r'^loop\.call_at\(arg0=', ((3, 11), None),
     'asyncio takes a `when` that is no number, then its loop run dies comparing it '
     'in the timer heap; ferroloop refuses it at once with a TypeError'),
    (r'^(closed )?(stream|write pipe)\.write\(arg0=non-contiguous memoryview\)$'
     r'|^datagram\.sendto\(arg0=non-contiguous memoryview\)$'
     r'|^stream\.writelines\(item=non-contiguous memoryview\)$', ((3, 11), None),
     'asyncio takes a view it cannot send and fails later, reporting the BufferError '
     'to the exception handler and closing the connection (on a closed transport, '
     'dropping it silently); ferroloop takes the buffer at once and raises the '
     'BufferError to the caller'),
    (r'^closed write pipe\.abort\(valid\)$', ((3, 11), None),
     "a second abort() of asyncio's write pipe fails inside asyncio (AttributeError "
     "on its cleared loop); ferroloop's does nothing, as a second close() does"),
    (r'^closed stream\.writelines\(valid\)$', ((3, 12), (3, 14)),
     "writelines() on asyncio's closed stream transport fails inside asyncio "
     "(TypeError: its cleared _write_ready is called); ferroloop's drops the data, "
     "as write() does"),
    (r'^(closed )?loop\.create_unix_server\(arg1=empty str\)$', ((3, 11), None),
     "asyncio fails indexing the empty path (IndexError), even on a closed loop; "
     "ferroloop binds it as Linux binds an empty address: to an unnamed abstract "
     "address the kernel picks"),
    (r'^loop\.call_(soon|soon_threadsafe|later|at)\(context=', ((3, 11), None),
     'a context that is no contextvars.Context reaches the exception handler on both '
     'loops when the callback runs: asyncio reports the AttributeError of calling its '
     '.run(), ferroloop enters contexts natively and reports TypeError "an instance '
     'of Context was expected"'),
]


def _run_table(kind):
    proc = subprocess.run([sys.executable, str(TABLE), kind], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr


def run_tables():
    """Both loops' outcomes, case id -> outcome, after checking neither run crashed."""
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(('asyncio', 'ferroloop'),
                        pool.map(_run_table, ('asyncio', 'ferroloop'))))
    for kind, (code, _, err) in runs.items():
        # A crash (signal, abort) or an error of the harness fails here.
        assert code == 0, f'{kind} table run exited with {code}:\n{err[-3000:]}'
    return {kind: dict(json.loads(line) for line in out.splitlines())
            for kind, (_, out, _) in runs.items()}


@pytest.fixture(scope='module')
def outcomes():
    return run_tables()


def _deliberate(case):
    return next((reason for pattern, _, reason in DELIBERATE
                 if re.search(pattern, case)), None)


def compare(stdlib, ferro):
    """Counts and the differences nobody listed, per kind of difference."""
    counts = {'calls': len(stdlib), 'both raise': 0, 'match': 0, 'one-sided': 0,
              'deliberate': 0}
    unlisted = {'mismatch': [], 'one-sided': [], 'other': [], 'hang': []}
    for case, want in stdlib.items():
        got = ferro[case]
        if got[0] == 'timeout' and want[0] != 'timeout':
            unlisted['hang'].append((case, want, got))
            continue
        listed = _deliberate(case) is not None and got != want
        counts['deliberate'] += listed
        if want[0] in AT_ONCE and got[0] in AT_ONCE:
            counts['both raise'] += 1
            if want[1:3] == got[1:3]:
                counts['match'] += 1
            elif not listed:
                unlisted['mismatch'].append((case, want, got))
            continue
        if (want[0] in AT_ONCE) != (got[0] in AT_ONCE):
            counts['one-sided'] += 1
            kind = 'one-sided'
        else:
            kind = 'other'
        if got != want and not listed:
            unlisted[kind].append((case, want, got))
    return counts, unlisted


def test_the_same_calls_ran_on_both_loops(outcomes):
    assert outcomes['ferroloop'].keys() == outcomes['asyncio'].keys()
    assert len(outcomes['asyncio']) > 5000


def test_no_call_hangs_on_ferroloop(outcomes):
    _, unlisted = compare(outcomes['asyncio'], outcomes['ferroloop'])
    assert unlisted['hang'] == []


def test_errors_raised_at_once_have_asyncios_type_and_message(outcomes):
    counts, unlisted = compare(outcomes['asyncio'], outcomes['ferroloop'])
    # At least 99% exactly, and every other one listed with its reason.
    assert counts['match'] >= 0.99 * counts['both raise'], counts
    assert unlisted['mismatch'] == []


def test_calls_only_one_loop_raises_are_all_deliberate(outcomes):
    _, unlisted = compare(outcomes['asyncio'], outcomes['ferroloop'])
    assert unlisted['one-sided'] == []


def test_what_reaches_the_exception_handler_is_the_same(outcomes):
    _, unlisted = compare(outcomes['asyncio'], outcomes['ferroloop'])
    assert unlisted['other'] == []


def test_every_listed_difference_still_happens(outcomes):
    # A listed difference that went away must leave the list (and the README).
    stdlib, ferro = outcomes['asyncio'], outcomes['ferroloop']
    differing = [case for case in stdlib if stdlib[case] != ferro[case]]
    stale = [p for p, (since, before), _ in DELIBERATE
             if since <= sys.version_info[:2] < (before or (99,))
             and not any(re.search(p, c) for c in differing)]
    assert stale == []


if __name__ == '__main__':
    # python tests/test_bad_input.py: the counts, and what differs.
    table = run_tables()
    counts, unlisted = compare(table['asyncio'], table['ferroloop'])
    print(json.dumps(counts))
    for kind, cases in unlisted.items():
        for case in cases:
            print(kind, *case)
