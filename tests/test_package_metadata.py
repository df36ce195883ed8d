"""The package's claims agree with each other: requires-python, the per-version
classifiers, the Pythons the README names, its compatibility figures, the
license and the changelog."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
README = (ROOT / 'README.md').read_text()
CARGO_VERSION = re.search(r'^version = "(.+)"$', (ROOT / 'Cargo.toml').read_text(), re.M).group(1)


def minor(version):
    return int(version.split('.')[1])


def test_classifiers_name_every_python_from_requires_python_on():
    lowest = re.fullmatch(r'>=(3\.\d+)', PYPROJECT['requires-python']).group(1)
    classified = [c.rsplit(' :: ', 1)[1] for c in PYPROJECT['classifiers']
                  if re.fullmatch(r'Programming Language :: Python :: 3\.\d+', c)]
    assert classified[0] == lowest
    assert [minor(v) for v in classified] == list(range(minor(lowest), minor(classified[-1]) + 1))


def test_readme_names_the_classified_pythons():
    classified = [c.rsplit(' :: ', 1)[1] for c in PYPROJECT['classifiers']
                  if re.fullmatch(r'Programming Language :: Python :: 3\.\d+', c)]
    assert f'**CPython {classified[0]} to {classified[-1]}**' in README
    assert f'`requires-python = "{PYPROJECT["requires-python"]}"`' in README
    wheels = re.search(r'The release wheels are built for CPython (.+?) on', README, re.S).group(1)
    assert re.findall(r'3\.\d+', wheels) == classified
    assert 'Operating System :: POSIX :: Linux' in PYPROJECT['classifiers']


def test_readme_compatibility_figures_are_the_expected_lists():
    table = dict(re.findall(r'^\| (3\.\d+) \| (\d+) \|$', README, re.M))
    # A list's tests are its lines other than comments and blank ones.
    lists = {path.stem.removeprefix('expected-'):
             str(sum(1 for line in path.read_text().splitlines() if line.strip() and not line.startswith('#')))
             for path in (ROOT / 'compat').glob('expected-3.*.txt')}
    assert table == lists


def test_license_is_mit_in_file_and_metadata():
    assert PYPROJECT['license'] == 'MIT'
    assert PYPROJECT['license-files'] == ['LICENSE']
    assert (ROOT / 'LICENSE').read_text().startswith('MIT License\n')


def test_changelog_has_an_entry_for_this_version():
    changelog = (ROOT / 'CHANGELOG.md').read_text()
    assert re.search(rf'^## {re.escape(CARGO_VERSION)}\b', changelog, re.M)
    assert PYPROJECT['urls']['Changelog'].endswith('/CHANGELOG.md')


def test_readme_links_work_off_github():
    # PyPI renders the README on its own site: a relative link would break there.
    links = re.findall(r'\]\(([^)]+)\)', README) + re.findall(r'<(https?://[^>]+)>', README)
    assert links
    assert [link for link in links if not link.startswith('https://')] == []
