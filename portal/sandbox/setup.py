"""Setting up sandbox EHR instances for the demo and e2e tests: data, logins, the portal app."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from portal.db import transaction
from portal.sandbox.accounts import create_demo_users, register_client
from portal.sandbox.app import create_sandbox_app
from portal.sandbox.db import sdb
from portal.sandbox.fhir.store import load_bundle, read_bundle_file
from portal.sandbox.models import FhirResource

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
# Apps registered from configuration: a JSON list in the instance folder (see README).
CLIENTS_FILE = "sandbox-clients.json"
# What the portal may ask of a demo EHR: every v1/v2 patient scope, identity, refresh, launch.
PORTAL_CLIENT_SCOPE = (
    "openid fhirUser profile launch launch/patient launch/encounter "
    "offline_access online_access patient/*.cruds patient/*.*"
)


@dataclass(frozen=True)
class InstanceSpec:
    """One demo EHR instance as described in data/instances.json."""

    slug: str
    name: str
    bundles: tuple[str, ...]
    copies: tuple[tuple[str, str], ...]  # (bundle, id namespace)


def demo_instances() -> list[InstanceSpec]:
    """The shipped demo EHR instances, in port order."""
    raw: dict[str, Any] = json.loads((DATA_DIR / "instances.json").read_text())
    return [
        InstanceSpec(
            slug=slug,
            name=spec["name"],
            bundles=tuple(spec["bundles"]),
            copies=tuple((c["bundle"], c["id_namespace"]) for c in spec.get("copies", [])),
        )
        for slug, spec in raw.items()
    ]


def build_instance(spec: InstanceSpec, port: int, host: str = "127.0.0.1", **config: Any) -> Flask:
    """Create the sandbox app of one instance and load its patients on first start."""
    app = create_sandbox_app(
        {
            "NAME": spec.name,
            "SLUG": spec.slug,
            "BASE_URL": f"http://{host}:{port}",
            "DEMO": True,
            "FAULTS_ENABLED": True,
            **config,
        }
    )
    load_patients(app, spec)
    clients_file = Path(app.instance_path) / CLIENTS_FILE
    if clients_file.exists():
        register_configured_clients(app, clients_file)
    return app


def load_patients(app: Flask, spec: InstanceSpec) -> int:
    """Load the instance's bundles into an empty store and give each patient a demo login."""
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        if session.scalar(sa.select(sa.func.count()).select_from(FhirResource)):
            return 0
        loaded = 0
        for name in spec.bundles:
            loaded += sum(load_bundle(session, read_bundle_file(_bundle(name))).counts.values())
        for name, namespace in spec.copies:
            result = load_bundle(session, read_bundle_file(_bundle(name)), id_namespace=namespace)
            loaded += sum(result.counts.values())
        create_demo_users(session)
        log.info("sandbox %s: loaded %d resources", spec.slug, loaded)
        return loaded


def register_portal(app: Flask, portal_url: str, client_id: str = "portal") -> None:
    """Register the portal with a sandbox instance as a public SMART app."""
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        register_client(
            session,
            client_id=client_id,
            name="My Health Record (patient portal)",
            client_type="public",
            redirect_uris=[f"{portal_url}/oauth/callback"],
            launch_url=f"{portal_url}/launch",
            scope=PORTAL_CLIENT_SCOPE,
        )


def _bundle(name: str) -> Path:
    return DATA_DIR / f"{name}.json.gz"


def register_configured_clients(app: Flask, path: Path) -> int:
    """Register the apps listed in a clients file for this instance; returns how many.

    Each entry takes register_client's keyword arguments, plus optional `instances`: the
    slugs it applies to (default: every instance).
    """
    entries = json.loads(path.read_text())
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of clients")
    count = 0
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        for entry in entries:
            entry = dict(entry)
            slugs = entry.pop("instances", None)
            if slugs is not None and app.config["SLUG"] not in slugs:
                continue
            register_client(session, **entry)
            count += 1
    return count
