"""What the example tests share: where the examples are, starting one as a
child process, waiting for it to exit by itself, and reading the port it
announces."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / 'examples'
TIMEOUT = 60


def command(name, *args):
    return [sys.executable, str(EXAMPLES / name), *map(str, args)]


def start_example(name, *args):
    return subprocess.Popen(command(name, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, *, no_traceback=False):
    """Waits for the example to exit 0 by itself; returns its stdout lines."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f'example did not exit by itself\nstdout:\n{out}\nstderr:\n{err}')
    assert proc.returncode == 0, f'exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}'
    if no_traceback:
        assert 'Traceback' not in err, err
    return out.splitlines()


def read_listening_port(proc):
    """The port of the example's first line, 'listening on 127.0.0.1:PORT'."""
    line = proc.stdout.readline()
    match = re.fullmatch(r'listening on 127\.0\.0\.1:(\d+)', line.strip())
    if match is None:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f'unexpected first line {line!r}\nstdout:\n{out}\nstderr:\n{err}')
    return int(match.group(1))
