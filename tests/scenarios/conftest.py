"""Scenario fixtures: a fake chat on a fresh demo data directory; `gitops`, the same with
GitHub and ArgoCD (fakes) configured."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.testing import FakeChat
from tests.scenarios._gitops import gitops

__all__ = ["chat", "gitops"]


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[FakeChat]:
    fake = FakeChat(tmp_path / "data")
    yield fake
    fake.close()
