"""The servers of the README's table, each run for real: started on
127.0.0.1, asked over HTTP which loop served the request, stopped by a
signal. Each fails unless ferroloop's loop served."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

APPS = os.path.join(os.path.dirname(__file__), 'integration_apps')
# Bounds only: a server normally answers within a second or two.
START_TIMEOUT = 60
STOP_TIMEOUT = 60


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get(port):
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=10) as response:
        return response.read().decode()


@contextlib.contextmanager
def server(args, port, tmp_path, stop=signal.SIGINT):
    """Runs ``python ARGS``; yields once it answers on ``port``, then stops it with ``stop``.

    Yields a dict the caller reads after the block: 'status' and 'log'.
    """
    log_path = tmp_path / 'server.log'
    outcome = {}
    with open(log_path, 'w') as log:
        env = dict(os.environ, PYTHONPATH=APPS)
        proc = subprocess.Popen([sys.executable, *args], cwd=APPS, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f'server exited with {proc.returncode}:\n{log_path.read_text()}')
            try:
                get(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f'server did not answer:\n{log_path.read_text()}')
                time.sleep(0.2)
        yield outcome
        proc.send_signal(stop)
        outcome['status'] = proc.wait(STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        outcome['log'] = log_path.read_text()


def served_by(port, requests=3):
    """(loop class names, pids) of a few requests' answers."""
    answers = [get(port).split() for _ in range(requests)]
    return {loop for loop, _ in answers}, {pid for _, pid in answers}


@pytest.mark.parametrize('workers', [[], ['--workers', '2']])
def test_uvicorn_command_line_with_loop_option(tmp_path, workers):
    port = free_port()
    with server(['-m', 'uvicorn', 'asgi_app:app', '--host', '127.0.0.1', '--port', str(port),
                 '--loop', 'ferroloop:new_event_loop', *workers], port, tmp_path) as outcome:
        loops, _ = served_by(port)
    assert loops == {'ferroloop.Loop'}
    assert outcome['status'] == 0, outcome['log']


def test_uvicorn_run_with_loop_argument_stops_as_on_asyncio(tmp_path):
    outcomes = {}
    for loop in ('ferroloop:new_event_loop', 'asyncio'):
        port = free_port()
        with server(['uvicorn_run.py', str(port), loop], port, tmp_path,
                    stop=signal.SIGTERM) as outcome:
            outcomes[loop] = served_by(port)[0], outcome
    assert outcomes['ferroloop:new_event_loop'][0] == {'ferroloop.Loop'}
    assert outcomes['asyncio'][0] == {'asyncio.unix_events._UnixSelectorEventLoop'}
    # uvicorn ends by raising the signal it stopped on again, on either loop.
    statuses = {loop: outcome['status'] for loop, (_, outcome) in outcomes.items()}
    assert statuses == {'ferroloop:new_event_loop': -signal.SIGTERM, 'asyncio': -signal.SIGTERM}
    assert 'Traceback' not in outcomes['ferroloop:new_event_loop'][1]['log']


def test_gunicorn_aiohttp_worker_with_two_workers_stops_on_sigterm(tmp_path):
    port = free_port()
    with server(['-m', 'gunicorn', 'aiohttp_app:app', '-k', 'ferroloop.aiohttp_worker.GunicornWebWorker',
                 '-w', '2', '-b', f'127.0.0.1:{port}'], port, tmp_path,
                stop=signal.SIGTERM) as outcome:
        loops, pids = served_by(port, requests=10)
    assert loops == {'ferroloop.Loop'}
    assert outcome['status'] == 0, outcome['log']
    booted = {line.rsplit(' ', 1)[1] for line in outcome['log'].splitlines()
              if 'Booting worker with pid' in line}
    assert len(booted) == 2, outcome['log']
    assert pids <= booted


def test_gunicorn_uvicorn_worker(tmp_path):
    port = free_port()
    with server(['-m', 'gunicorn', 'asgi_app:app', '-k', 'ferroloop.uvicorn_worker.UvicornWorker',
                 '-w', '1', '-b', f'127.0.0.1:{port}'], port, tmp_path,
                stop=signal.SIGTERM) as outcome:
        loops, _ = served_by(port)
    assert loops == {'ferroloop.Loop'}
    assert outcome['status'] == 0, outcome['log']


def test_hypercorn_serve_under_ferroloop_run(tmp_path):
    port = free_port()
    with server(['hypercorn_serve.py', str(port)], port, tmp_path) as outcome:
        loops, _ = served_by(port)
    assert loops == {'ferroloop.Loop'}
    assert outcome['status'] == 0, outcome['log']


def test_hypercorn_command_line_under_python_m_ferroloop_run(tmp_path):
    port = free_port()
    with server(['-m', 'ferroloop', 'run', '-m', 'hypercorn', '--workers', '0',
                 '--bind', f'127.0.0.1:{port}', 'asgi_app:app'], port, tmp_path) as outcome:
        loops, _ = served_by(port)
    assert loops == {'ferroloop.Loop'}
    assert outcome['status'] == 0, outcome['log']
    assert 'ferroloop was not used' not in outcome['log']


def test_uvicorn_under_ferroloop_run_without_loop_option_says_ferroloop_was_not_used(tmp_path):
    """uvicorn builds its own loop: the policy cannot reach it, and the user is told."""
    port = free_port()
    with server(['-m', 'ferroloop', 'run', '-m', 'uvicorn', 'asgi_app:app', '--host', '127.0.0.1',
                 '--port', str(port), '--loop', 'asyncio'], port, tmp_path) as outcome:
        loops, _ = served_by(port)
    assert loops == {'asyncio.unix_events._UnixSelectorEventLoop'}
    assert outcome['status'] == 0, outcome['log']
    assert ('ferroloop was not used: it ran asyncio.unix_events._UnixSelectorEventLoop'
            in outcome['log'])
    assert "--loop ferroloop:new_event_loop" in outcome['log']


def test_gunicorn_with_aiohttps_own_worker_under_python_m_ferroloop_run(tmp_path):
    """The forked workers inherit the policy: they serve on ferroloop, and run stays quiet."""
    port = free_port()
    with server(['-m', 'ferroloop', 'run', '-m', 'gunicorn', 'aiohttp_app:app',
                 '-k', 'aiohttp.GunicornWebWorker', '-w', '1', '-b', f'127.0.0.1:{port}'],
                port, tmp_path, stop=signal.SIGTERM) as outcome:
        loops, _ = served_by(port)
    assert loops == {'ferroloop.Loop'}
    assert outcome['status'] == 0, outcome['log']
    assert 'ferroloop was not used' not in outcome['log']


def test_hypercorn_workers_under_python_m_ferroloop_run_say_ferroloop_was_not_used(tmp_path):
    """hypercorn's worker processes are fresh interpreters: the policy does not reach them."""
    port = free_port()
    with server(['-m', 'ferroloop', 'run', '-m', 'hypercorn', '--workers', '1',
                 '--bind', f'127.0.0.1:{port}', 'asgi_app:app'], port, tmp_path) as outcome:
        loops, _ = served_by(port)
    assert loops == {'asyncio.unix_events._UnixSelectorEventLoop'}
    assert ('ferroloop was not used: the program ran no asyncio event loop in this process'
            in outcome['log'])
    assert "'--workers 0'" in outcome['log']
