"""The unit tier (``pytest tests/unit``): every test here is marked ``unit`` and may not
reach PostgreSQL, whose fixtures fail instead of starting a server."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests ``unit`` (``pytest -m unit`` selects them anywhere)."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """Shadows the PostgreSQL fixture of tests/conftest.py: unit tests run without it."""
    pytest.fail("a unit test asked for PostgreSQL; it belongs outside tests/unit")
