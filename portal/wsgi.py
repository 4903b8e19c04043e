"""The portal for a production WSGI server: `gunicorn -c gunicorn.conf.py portal.wsgi:app`.

Configuration comes from the instance folder and PORTAL_* variables (see README).
"""

from __future__ import annotations

from portal.app import create_app
from portal.serving import freeze_startup_objects

app = create_app()
freeze_startup_objects()
