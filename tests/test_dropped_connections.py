"""The database going away: after PostgreSQL drops the portal's connections (a restart, a
failover), the next requests get fresh ones instead of failing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from portal.extensions import db
from tests.conftest import pg_base_url
from tests.phr import factories as f
from tests.sessions import begin

pytestmark = pytest.mark.skipif(
    pg_base_url() is None,
    reason="PostgreSQL drops connections; SQLite is a file the process opens itself",
)


def drop_connections(app: Flask) -> int:
    """Terminate, from outside, every server connection the app's pool holds."""
    engine = db.engine(app)
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    outside = sa.create_engine(str(pg_base_url()))
    try:
        with outside.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM (SELECT pg_terminate_backend(:pid)) t"),
                    {"pid": pid},
                ).scalar()
                or 0
            )
    finally:
        outside.dispose()


def test_requests_after_the_server_dropped_the_pool_succeed(app: Flask) -> None:
    with app.app_context():
        account = f.make_account(db.session, "Ana")
        db.session.commit()
        account_id = account.id
    client = app.test_client()
    with client.session_transaction() as s:
        begin(s, account_id)
    assert client.get("/records/").status_code == 200
    assert drop_connections(app) == 1
    again = client.get("/records/")
    assert again.status_code == 200 and "Ana" in again.text
