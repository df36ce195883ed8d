"""ferroloop's public API as a typed user program sees it, and its version.

The type checkers (mypy, pyright: the test extra) check tests/typed_api_example.py
strictly against the installed package; each check is skipped where its tool
is not installed. pyright's PyPI package runs a Node.js program it fetches on
first use.
"""

import ast
import asyncio
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import ferroloop

EXAMPLE = Path(__file__).with_name('typed_api_example.py')
STUBS = [Path(ferroloop.__file__).with_name(name) for name in ('__init__.pyi', '_ferroloop.pyi')]
BIN = Path(sys.executable).parent


def tool(name):
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f'{name} is not installed (pip install ".[test]")')
    # pyright's first run installs its Node.js program; without node or the
    # npm registry it cannot run at all.
    probe = run_tool([path, '--version'], cwd=BIN)
    if probe.returncode != 0:
        pytest.skip(f'{name} cannot run here: {probe.stderr.strip()[-300:]}')
    return path


def run_tool(args, cwd):
    # This interpreter's directory first on PATH: pyright finds the
    # environment to check through the `python` it runs.
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}')
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_version_is_the_installed_distributions():
    assert ferroloop.__version__ == importlib.metadata.version('ferroloop')


def test_public_names_are_the_documented_api():
    assert sorted(ferroloop.__all__) == [
        'EventLoopPolicy', 'Handle', 'LagStats', 'Loop', 'LoopMetrics', 'SlowCallback', 'TimerHandle',
        'install', 'new_event_loop', 'run']
    # Submodules (ferroloop.otel, the workers) are no names of the package's
    # own: importing one only binds it there.
    submodule = lambda value: isinstance(value, types.ModuleType) and value.__name__.startswith('ferroloop.')
    assert {name for name, value in vars(ferroloop).items()
            if not name.startswith('_') and not submodule(value)} == set(ferroloop.__all__)


def test_loop_stub_declares_every_event_loop_method():
    # asyncio's AbstractEventLoop declares its methods abstract: one the stub
    # left out would make `ferroloop.Loop()` an error for type checkers.
    tree = ast.parse(STUBS[0].read_text())
    loop = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == 'Loop')
    declared = {node.name for node in loop.body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    wanted = {name for name in vars(asyncio.AbstractEventLoop) if not name.startswith('_')}
    assert wanted - declared == set()
    # ferroloop's own additions: the metrics (README: Observability).
    assert declared - wanted == {'__init__', 'enable_metrics', 'disable_metrics', 'metrics'}
    assert all(callable(getattr(ferroloop.Loop, name)) for name in wanted)


def test_typed_example_runs_on_ferroloop():
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    expected = ['soon', 'later', 'double=42', 'handle cancelled=False', 'direct', 'Loop', 'Loop',
                'Loop']
    if sys.version_info >= (3, 12):
        expected.append('8')
    assert out == expected + [ferroloop.__version__]


def test_typed_example_passes_mypy_strict(tmp_path):
    mypy = tool('mypy')
    proc = run_tool([mypy, '--strict', '--no-incremental', '--python-executable', sys.executable,
                     str(EXAMPLE)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith('Success: no issues found'), proc.stdout


def test_stubs_are_valid_subclasses_of_asyncios_types(tmp_path):
    mypy = tool('mypy')
    # Copies, so mypy checks the stubs alone, not the site-packages around them.
    package = tmp_path / 'ferroloop'
    package.mkdir()
    # _metrics.py is typed inline: its dataclasses are the public types.
    for stub in [*STUBS, Path(ferroloop.__file__).with_name('_metrics.py')]:
        shutil.copy(stub, package / stub.name)
    proc = run_tool([mypy, '--strict', '--no-incremental', 'ferroloop'], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_typed_example_passes_pyright_strict(tmp_path):
    pyright = tool('pyright')
    (tmp_path / 'pyrightconfig.json').write_text(json.dumps({'typeCheckingMode': 'strict'}))
    proc = run_tool([pyright, '--outputjson', str(EXAMPLE)], cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert report['generalDiagnostics'] == [], proc.stdout
    assert report['summary']['filesAnalyzed'] == 1
    assert proc.returncode == 0


def test_public_api_is_completely_typed(tmp_path):
    pyright = tool('pyright')
    proc = run_tool([pyright, '--outputjson', '--verifytypes', 'ferroloop', '--ignoreexternal'],
                    cwd=tmp_path)
    report = json.loads(proc.stdout)['typeCompleteness']
    # The checked package is the one these tests import, not another copy.
    assert Path(report['packageRootDirectory']).resolve() == Path(ferroloop.__file__).parent.resolve()
    unknown = [s['name'] for s in report['symbols'] if not s['isTypeKnown']]
    assert unknown == []
    assert report['completenessScore'] == 1.0
