"""pytest-asyncio (1.4+) runs async tests on ferroloop::

    pytest -p ferroloop.pytest_plugin      # or, in conftest.py:
    pytest_plugins = ['ferroloop.pytest_plugin']

Opt-in (no entry point), so installing ferroloop changes no other project's tests.
"""

from ._policy import new_event_loop


def pytest_asyncio_loop_factories(config, item):
    """pytest-asyncio's hook choosing the loops a test runs on."""
    return {'ferroloop': new_event_loop}
