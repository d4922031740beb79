"""Schema and storage on the embedded SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import migrations
from storage.store import Store, create_engine


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(database_url)
    await migrations.migrate(engine)
    yield Store(engine)
    await engine.dispose()


def test_split_statements_keeps_dollar_blocks_whole() -> None:
    sql = """
-- comment
CREATE TABLE a (x INT);
DO $$
BEGIN
  PERFORM 1;
  PERFORM 2;
END
$$;
CREATE INDEX i ON a (x);
"""
    statements = migrations.split_statements(sql)
    assert len(statements) == 3
    assert statements[1].startswith("DO $$") and "PERFORM 2;" in statements[1]


def test_dialect_specific_file_wins(tmp_path: Path) -> None:
    (tmp_path / "0001_base.sql").write_text("SELECT 1;")
    (tmp_path / "0001_base.postgresql.sql").write_text("SELECT 2;")
    (tmp_path / "0002_more.sqlite.sql").write_text("SELECT 3;")
    pg = migrations.discover("postgresql", tmp_path)
    lite = migrations.discover("sqlite", tmp_path)
    assert [m.path.name for m in pg] == ["0001_base.postgresql.sql"]
    assert [m.path.name for m in lite] == ["0001_base.sql", "0002_more.sqlite.sql"]


def test_bad_migration_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "first.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"first\.sql"):
        migrations.discover("sqlite", tmp_path)


async def test_migrate_is_idempotent(store: Store) -> None:
    assert await migrations.migrate(store.engine) == []
    assert await migrations.pending(store.engine) == []
    async with store.engine.connect() as conn:
        versions = (
            (await conn.execute(text("SELECT version FROM schema_migrations"))).scalars().all()
        )
    assert sorted(versions) == [m.version for m in migrations.discover(store.engine.dialect.name)]


async def test_room_lifecycle(store: Store) -> None:
    room = await store.create_room("Morning HIIT")
    loaded = await store.get_room(room.id)
    assert loaded is not None and loaded.title == "Morning HIIT" and loaded.ended_at is None
    await store.set_gallery(room.id, True)
    await store.end_room(room.id)
    ended = await store.get_room(room.id)
    assert ended is not None and ended.gallery is True and ended.ended_at is not None
    first_end = ended.ended_at
    await store.end_room(room.id)
    again = await store.get_room(room.id)
    assert again is not None and again.ended_at == first_end
    assert await store.get_room("nope") is None


async def test_chat_keeps_the_last_100_in_order(store: Store) -> None:
    room = await store.create_room("Spin")
    other = await store.create_room("Yoga")
    for i in range(105):
        await store.add_chat(room.id, "p1", "Ann", f"message {i}")
    await store.add_chat(other.id, "p2", "Bob", "elsewhere")
    recent = await store.recent_chat(room.id)
    assert [m.text for m in recent] == [f"message {i}" for i in range(5, 105)]
    assert all(m.room_id == room.id for m in recent)


async def test_chat_for_unknown_room_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match=r"(?i)foreign key|violates"):
        await store.add_chat("no-such-room", "p1", "Ann", "hello")


async def test_what_postgresql_says_during_a_migration_is_logged(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A migration's RAISE WARNING (e.g. 0002 saying heart_rate stays a plain table, and
    why) reaches the server's log; asyncpg alone would drop it."""
    (tmp_path / "0001_warns.postgresql.sql").write_text(
        "DO $$\nBEGIN\n    RAISE WARNING 'the plain path, because of %', 'reasons';\nEND\n$$;\n"
    )
    engine = create_engine(postgres_url)
    try:
        caplog.set_level("WARNING", logger="storage.migrations")
        applied = await migrations.migrate(engine, directory=tmp_path)
        assert [m.name for m in applied] == ["warns"]
        assert "database: the plain path, because of reasons" in caplog.text
        # The listener went with the migration: the pooled connection logs nothing more.
        caplog.clear()
        async with engine.connect() as conn:
            await conn.exec_driver_sql("DO $$ BEGIN RAISE WARNING 'later'; END $$")
        assert "later" not in caplog.text
    finally:
        await engine.dispose()
