"""Portal tables shared across features.

Accounts, per-EHR connections and caregiver grants arrive with their features; the EHR
registry comes first because every launch starts by checking an `iss` against it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, created_at, intpk, str255


class EhrServer(Base):
    """An EHR the portal is allowed to talk to; an `iss` not listed here is refused."""

    __tablename__ = "ehr_server"

    id: Mapped[intpk]
    name: Mapped[str255]
    fhir_base: Mapped[str] = mapped_column(sa.String(500), unique=True)
    client_id: Mapped[str255]
    # public | confidential-symmetric | confidential-asymmetric
    client_type: Mapped[str] = mapped_column(sa.String(40), default="public")
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime | None]
