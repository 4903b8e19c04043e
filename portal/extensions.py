"""The one place where Flask extensions are created."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from portal import fhirjson
from portal.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


class Database:
    """Engine per app and one session per request, committed once after the view succeeds.

    Views and domain code only flush; a failed commit becomes a 500 instead of a silent loss.
    Work that must follow the commit (start a sync, send mail) is registered with
    `after_commit` and runs only once the commit has succeeded; a rollback drops it.
    """

    def __init__(
        self, url_key: str = "DATABASE_URL", name: str = "db", *, exact_decimals: bool = False
    ) -> None:
        self.url_key = url_key
        self.name = name
        self.exact_decimals = exact_decimals

    def init_app(self, app: Flask, engine: Engine | None = None) -> None:
        # Stored FHIR is read back with its decimals as written (portal.fhirjson).
        exact = (
            {"json_serializer": fhirjson.column_dumps, "json_deserializer": fhirjson.loads}
            if self.exact_decimals
            else {}
        )
        engine = engine or make_engine(app.config[self.url_key], **exact)
        app.extensions[self.name] = (engine, make_sessionmaker(engine))
        app.after_request(self._commit)
        app.teardown_appcontext(self._close)

    def engine(self, app: Flask) -> Engine:
        engine: Engine = app.extensions[self.name][0]
        return engine

    def sessionmaker(self, app: Flask) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = app.extensions[self.name][1]
        return factory

    @property
    def session(self) -> Session:
        from flask import current_app

        key = f"_{self.name}_session"
        session: Session | None = g.get(key)
        if session is None:
            session = self.sessionmaker(current_app)()
            setattr(g, key, session)
        return session

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run `callback` after this request's one commit succeeds (never on a rollback)."""
        g.setdefault(f"_{self.name}_after_commit", []).append(callback)

    def _commit(self, response: Response) -> Response:
        session: Session | None = g.get(f"_{self.name}_session")
        callbacks: list[Callable[[], object]] = g.pop(f"_{self.name}_after_commit", [])
        if response.status_code >= 400:
            if session is not None:
                session.rollback()
            return response
        if session is not None:
            session.commit()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the commit stands; the work is retried by its own sweep
                log.exception("work after the commit failed")
        return response

    def _close(self, _exc: Any) -> None:
        session: Session | None = g.pop(f"_{self.name}_session", None)
        if session is not None:
            session.rollback()
            session.close()


class AppLimiter(Limiter):
    """flask-limiter, reading each app's RATELIMIT_KEY_PREFIX afresh.

    Limiter keeps the first app's prefix on the object (`self._key_prefix or config`); tests
    and commands build several apps in one process, each with its own settings.
    """

    def init_app(self, app: Flask) -> None:
        self._key_prefix = ""
        super().init_app(app)


def config_limit(name: str) -> Callable[[], str]:
    """A limit read from the app's configuration at request time (e.g. "30 per minute")."""
    from flask import current_app

    return lambda: str(current_app.config[name])


db = Database(exact_decimals=True)
csrf = CSRFProtect()
htmx = HTMX()  # the request's htmx details (flask-htmx)
# Storage: RATELIMIT_STORAGE_URI, else REDIS_URL (limits hold across workers), else memory://.
# Keyed on the client address, which ProxyFix sets from TRUSTED_PROXY_COUNT proxies' headers.
limiter = AppLimiter(key_func=get_remote_address)
