"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py portal.wsgi:app`.

Each setting is explained in README.md ("Production server"); PORTAL_BIND, PORTAL_WORKERS and
PORTAL_THREADS override the defaults from the environment.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger

from portal.web.redact import RedactFilter, redact_path, redact_text

# Where to listen. Behind a load balancer in a container: PORTAL_BIND=0.0.0.0:8000.
bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
# Processes; each holds its own database pool and background sync threads.
workers = int(os.environ.get("PORTAL_WORKERS", "2"))
# Threads per process: requests mostly wait on the database or an EHR, not on the CPU.
worker_class = "gthread"
threads = int(os.environ.get("PORTAL_THREADS", "8"))
# Seconds an idle keep-alive connection stays open: longer than your load balancer's idle
# timeout (AWS ALB default 60 s), else the balancer reuses a connection gunicorn just closed
# and a patient gets a 502.
keepalive = 75
# A worker silent this long (seconds) is killed and replaced.
timeout = 60
# On restart or SIGTERM, seconds a worker gets to finish the requests it is serving.
graceful_timeout = 30
# Access log to stdout (the platform collects it), errors to stderr; the format has no query
# string and no referrer, and RedactingLogger redacts token paths in every line.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
# gunicorn 25+'s runtime control socket (~/.gunicorn/gunicorn.ctl) is unused here, and two
# servers on one host would share its path.
control_socket_disable = True


class RedactingLogger(Logger):
    """gunicorn's logger, with the portal's redaction of URLs (portal/web/redact.py)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(RedactFilter())  # "Error handling request /reset/..."

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = redact_path(str(environ.get("RAW_URI") or environ.get("PATH_INFO") or ""))
        atoms["U"] = path
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"
        atoms["q"] = "-"
        for key, value in list(atoms.items()):
            if key in ("{authorization}i", "{cookie}i", "{set-cookie}o"):
                atoms[key] = "-"
            elif isinstance(value, str) and key.startswith("{"):  # headers, environ: URLs
                atoms[key] = redact_text(value)
        atoms["f"] = redact_text(str(atoms.get("f", "-")))
        return atoms


logger_class = RedactingLogger
