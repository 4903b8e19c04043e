"""Brant Jacobson at both sandbox clinics, as the demo seeds him: Riverside has his Synthea
bundle, Lakeside the same bundle under its own ids (`remap_ids`, as `instances.json` says)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from portal.models import Account, EhrConnection
from portal.sandbox.fhir.store import remap_ids
from tests.phr import factories as f

RIVERSIDE = "Riverside General Hospital"
LAKESIDE = "Lakeside Family Clinic"
LAKESIDE_IDS = "lakeside-family-clinic"  # the id namespace of portal/sandbox/data/instances.json


@dataclass(frozen=True)
class TwoClinics:
    account: Account
    river: EhrConnection
    lake: EhrConnection
    river_resources: list[dict[str, Any]]
    lake_resources: list[dict[str, Any]]


def patient_id(resources: list[dict[str, Any]]) -> str:
    return next(str(r["id"]) for r in resources if r["resourceType"] == "Patient")


def brant_at_both(session: Session, name: str = "Brant Jacobson") -> TwoClinics:
    """An account connected to both clinics, each holding Brant's record under its own ids."""
    account = f.make_account(session, name)
    river_bundle = f.bundle("brant_jacobson")
    lake_bundle = remap_ids(f.bundle("brant_jacobson"), LAKESIDE_IDS)
    river_ids = patient_id(f.resolved_resources(river_bundle))
    lake_ids = patient_id(f.resolved_resources(lake_bundle))
    river = f.make_connection(session, account, RIVERSIDE, patient_id=river_ids)
    lake = f.make_connection(session, account, LAKESIDE, patient_id=lake_ids)
    return TwoClinics(
        account,
        river,
        lake,
        f.add_bundle(session, river, river_bundle),
        f.add_bundle(session, lake, lake_bundle),
    )
