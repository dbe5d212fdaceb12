"""Scenario fixtures: a fake chat on a fresh demo data directory."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.testing import FakeChat


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data")
    yield fake
    fake.close()
