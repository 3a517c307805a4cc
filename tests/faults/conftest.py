"""The fault suite: every test here starts the real daemon and attacks it. ``pytest -m faults`` runs it alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import raised_descriptor_limit


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _descriptors() -> Iterator[None]:
    """Thousands of client sockets in this process need more than 1,024 descriptors."""
    with raised_descriptor_limit():
        yield
