"""The request's one commit, and the work registered to follow it."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask, abort

from portal.extensions import db
from portal.models import Account


def _app_with_routes(app: Flask, ran: list[str]) -> None:
    def remember(name: str) -> None:
        # The work sees the committed row from a session of its own.
        with db.sessionmaker(app)() as other:
            found = other.scalar(sa.select(Account.email).where(Account.email == name))
        ran.append(f"{name}:{'committed' if found else 'missing'}")

    @app.post("/_t/ok/<name>")
    def ok(name: str) -> str:
        db.session.add(Account(email=name))
        db.after_commit(lambda: remember(name))
        return "ok"

    @app.post("/_t/refused/<name>")
    def refused(name: str) -> str:
        db.session.add(Account(email=name))
        db.after_commit(lambda: remember(name))
        abort(400)

    @app.post("/_t/broken")
    def broken() -> str:
        def fail() -> None:
            raise RuntimeError("boom")

        db.after_commit(fail)
        db.after_commit(lambda: ran.append("second"))
        return "ok"


def test_work_runs_after_the_commit_and_never_after_a_rollback(app: Flask) -> None:
    ran: list[str] = []
    _app_with_routes(app, ran)
    client = app.test_client()
    assert client.post("/_t/ok/a@example.org").status_code == 200
    assert client.post("/_t/refused/b@example.org").status_code == 400
    assert ran == ["a@example.org:committed"]
    with app.app_context():
        emails = set(db.session.scalars(sa.select(Account.email)))
    assert emails == {"a@example.org"}


def test_a_failing_callback_does_not_stop_the_others_or_the_response(app: Flask) -> None:
    ran: list[str] = []
    _app_with_routes(app, ran)
    assert app.test_client().post("/_t/broken").status_code == 200
    assert ran == ["second"]
