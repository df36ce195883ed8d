import asyncio
from collections.abc import Callable

import pytest

def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's hook choosing the loops a test runs on: ferroloop's."""
