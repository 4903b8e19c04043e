"""UTC datetimes: written on SQLite as exactly the text SQLAlchemy's own type writes (queries
compare that text), and read back aware in UTC, on every database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from portal.db import UTCDateTime, make_engine


@pytest.fixture
def db_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


MOMENTS = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written
    datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),  # a year of three digits
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))),  # stored as 17:00 UTC
    datetime(2026, 6, 1, 2, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


def test_sqlite_text_is_sqlalchemys_own() -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    stock = sqlite.DATETIME().bind_processor(dialect)
    for moment in MOMENTS:
        assert ours(moment) == stock(moment.astimezone(UTC)), moment
    assert ours(None) is None


def test_moments_come_back_aware_in_utc(db_engine) -> None:
    table = sa.Table("moments", sa.MetaData(), sa.Column("at", UTCDateTime()))
    table.create(db_engine)
    try:
        with db_engine.begin() as conn:
            conn.execute(table.insert(), [{"at": m} for m in MOMENTS])
            back = conn.scalars(sa.select(table.c.at)).all()
            later = conn.scalar(
                sa.select(sa.func.count()).where(table.c.at > MOMENTS[0])  # compared as stored
            )
    finally:
        table.drop(db_engine)
    assert back == MOMENTS and all(b.tzinfo == UTC for b in back)
    assert later == 4


def test_naive_datetimes_are_refused(db_engine) -> None:
    table = sa.Table("naive", sa.MetaData(), sa.Column("at", UTCDateTime()))
    table.create(db_engine)
    try:
        with pytest.raises(sa.exc.StatementError), db_engine.begin() as conn:
            conn.execute(table.insert(), [{"at": datetime(2026, 1, 1)}])
    finally:
        table.drop(db_engine)
