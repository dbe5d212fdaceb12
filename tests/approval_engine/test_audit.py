"""The hash-chained audit log: an intact log verifies, any tampering names the first bad row."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from approval_engine import audit
from approval_engine.engine import Engine
from approval_engine.store import Store
from tests.approval_engine._support import START

ROWS = 5


def write(store: Store, *entries: tuple[str, str, str, dict[str, object]]) -> None:
    for n, (actor, action, subject, detail) in enumerate(entries):
        with store.transaction() as session:
            audit.record(
                session,
                at=START + timedelta(minutes=n),
                actor=actor,
                action=action,
                subject=subject,
                detail=detail,
            )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of five rows, one of them with details that are awkward to hash."""
    path = tmp_path_factory.mktemp("audit") / "audit.db"
    store = Store(f"sqlite:///{path}")
    write(
        store,
        ("alice", "proposed", "scale-1", {"change": "checkout/prod: min_replicas → 4"}),
        ("bob", "approved", "scale-1", {"head": "c0ffee", "count": 1, "quorum": 2}),
        ("carol", "denied", "scale-1", {"attempted": "approve", "reason": "viewer"}),
        ("dave", "approved", "scale-1", {"nested": {"b": [1, 2.5, None], "a": "ünï"}}),
        ("opsgate", "merged", "scale-1", {"from": "approved", "at": START}),
    )
    store.close()
    return path


@pytest.fixture
def db_path(template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the five-row log."""
    path = tmp_path / template.name
    for part in template.parent.glob(template.name + "*"):  # the WAL too, if any is left
        shutil.copy(part, tmp_path / part.name)
    return path


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{db_path}")
    yield store
    store.close()


def tamper(store: Store, sql: str, **params: object) -> None:
    """Change the database behind the engine's back, as someone with SQL access could."""
    with store.engine.begin() as connection:
        connection.execute(text(sql), params)


def test_an_intact_log_verifies(store: Store) -> None:
    assert audit.verify(store) == audit.Verification(ok=True, rows=ROWS)


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    empty = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    assert audit.verify(empty) == audit.Verification(ok=True, rows=0)
    empty.close()


def test_the_chain_continues_across_a_restart(store: Store, db_path: Path) -> None:
    store.close()
    reopened = Store(f"sqlite:///{db_path}")
    write(reopened, ("alice", "proposed", "scale-2", {}))

    assert audit.verify(reopened) == audit.Verification(ok=True, rows=ROWS + 1)
    reopened.close()


def test_sub_second_times_are_dropped_before_hashing_so_the_row_still_verifies(
    store: Store,
) -> None:
    with store.transaction() as session:
        audit.record(
            session,
            at=START.replace(microsecond=123456),
            actor="alice",
            action="noted",
            subject="-",
        )

    assert audit.verify(store).ok
    assert audit.tail(store, limit=1)[0].at == START


FORGERIES = {
    "at": "2030-01-01 00:00:00.000000",
    "actor": "mallory",
    "action": "rejected",
    "subject": "scale-99",
    "detail": '{"reason": "forged"}',
    "prev_hash": "f" * 64,
    "hash": "e" * 64,
}


@pytest.mark.parametrize("column", list(FORGERIES))
@pytest.mark.parametrize("row", [1, 3, ROWS])
def test_changing_any_column_of_any_row_is_found_at_that_row(
    store: Store, column: str, row: int
) -> None:
    tamper(
        store, f"UPDATE audit SET {column} = :value WHERE id = :id", value=FORGERIES[column], id=row
    )

    result = audit.verify(store)

    assert (result.ok, result.first_bad) == (False, row), result.reason
    assert f"row {row} " in result.reason


def test_renumbering_a_row_is_found_where_its_number_went_missing(store: Store) -> None:
    tamper(store, "UPDATE audit SET id = 99 WHERE id = 3")

    result = audit.verify(store)

    assert (result.ok, result.first_bad) == (False, 3)
    assert result.reason == "row 3 is missing (next row is 4)"


def test_deleting_a_middle_row_is_found_at_that_row(store: Store) -> None:
    tamper(store, "DELETE FROM audit WHERE id = 2")

    result = audit.verify(store)

    assert (result.ok, result.first_bad, result.rows) == (False, 2, ROWS - 1)
    assert result.reason == "row 2 is missing (next row is 3)"


def test_deleting_the_last_row_is_found_too(store: Store) -> None:
    tamper(store, "DELETE FROM audit WHERE id = :id", id=ROWS)

    result = audit.verify(store)

    assert (result.ok, result.first_bad) == (False, ROWS)
    assert result.reason == f"the log ends at row {ROWS - 1} but row {ROWS} was the last written"


def test_deleting_every_row_is_found_at_the_first(store: Store) -> None:
    tamper(store, "DELETE FROM audit")

    result = audit.verify(store)

    assert (result.ok, result.first_bad) == (False, 1)


def test_tail_gives_the_latest_rows_oldest_first(store: Store) -> None:
    entries = audit.tail(store, limit=3)

    assert [e.id for e in entries] == [3, 4, 5]
    assert [e.actor for e in entries] == ["carol", "dave", "opsgate"]
    assert [e.at for e in entries] == [START + timedelta(minutes=m) for m in (2, 3, 4)]
    assert entries[1].detail == {"nested": {"b": [1, 2.5, None], "a": "ünï"}}
    assert entries[2].detail == {"from": "approved", "at": str(START)}


def test_tail_of_more_than_there_is_gives_everything(store: Store) -> None:
    assert [e.id for e in audit.tail(store, limit=100)] == [1, 2, 3, 4, 5]


def test_a_refusal_decided_at_the_chat_edge_is_audited_through_the_engine(engine: Engine) -> None:
    engine.audit_denial(
        actor="slack:U999", action="command", subject="-", reason="unknown identity"
    )

    entry = audit.tail(engine.store, limit=1)[0]
    assert (entry.actor, entry.action, entry.subject) == ("slack:U999", "denied", "-")
    assert entry.detail == {"attempted": "command", "reason": "unknown identity"}
    assert audit.verify(engine.store).ok


def test_a_row_recorded_with_a_non_utc_time_still_verifies(store: Store) -> None:
    with store.transaction() as session:
        audit.record(
            session,
            at=datetime(2025, 1, 6, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            actor="alice",
            action="noted",
            subject="-",
        )

    assert audit.verify(store).ok
    assert audit.tail(store, limit=1)[0].at == datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
