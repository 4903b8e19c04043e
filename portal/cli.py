"""The `portal` command: database, EHR registry, sandbox EHR and the zero-configuration demo."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from portal.app import create_app
from portal.db import transaction
from portal.extensions import db
from portal.migrate import downgrade, upgrade
from portal.registry import CLIENT_TYPES, RegistryError, register, upsert_ehr
from portal.sync.status import registry


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=False)
def main() -> None:
    """Patient portal and personal health record."""


# --- database -------------------------------------------------------------------------------
@main.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    upgrade(db.engine(current_app), revision)
    click.echo(f"database at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Step migrations down to REVISION (e.g. base)."""
    downgrade(db.engine(current_app), revision)
    click.echo(f"database at {revision}")


# --- EHR registry ---------------------------------------------------------------------------
@main.group("ehr")
def ehr_group() -> None:
    """The EHRs this portal may connect to."""


@ehr_group.command("add")
@click.option("--name", required=True)
@click.option("--fhir-base", required=True, help="The EHR's FHIR base URL (its `iss`).")
@click.option("--client-id", required=True)
@click.option("--client-type", type=click.Choice(CLIENT_TYPES), default="public")
@click.option(
    "--client-secret-env",
    help="Name of an environment variable holding the client secret (confidential-symmetric); "
    "read from the environment so it never appears in the shell history.",
)
@with_appcontext
def ehr_add(
    name: str, fhir_base: str, client_id: str, client_type: str, client_secret_env: str | None
) -> None:
    """Add or update an EHR."""
    entry = {
        "name": name,
        "fhir_base": fhir_base,
        "client_id": client_id,
        "client_type": client_type,
        "client_secret_env": client_secret_env,
    }
    _register([entry])


@ehr_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def ehr_load(path: Path) -> None:
    """Add or update every EHR of a JSON file: a list of {name, fhir_base, client_id,
    client_type, client_secret_env} (see README)."""
    try:
        entries = json.loads(path.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise click.BadParameter(f"{path} must hold a JSON list of EHR entries")
    _register(entries)


@ehr_group.command("list")
@with_appcontext
def ehr_list() -> None:
    """Show the registered EHRs."""
    for ehr in registry(db.session):
        click.echo(f"{ehr.id}\t{ehr.name}\t{ehr.fhir_base}\t{ehr.client_id}\t{ehr.client_type}")


def _register(entries: list[dict[str, Any]]) -> None:
    """All or nothing: one bad entry registers none and says which."""
    with transaction(db.sessionmaker(current_app)) as session:
        for number, entry in enumerate(entries, 1):
            try:
                ehr = register(session, entry, os.environ)
            except RegistryError as exc:
                where = f"entry {number}: " if len(entries) > 1 else ""
                raise click.BadParameter(where + str(exc)) from exc
            click.echo(f"registered {ehr.name}: {ehr.fhir_base}")


# --- sync -----------------------------------------------------------------------------------
@main.command("sync")
@click.option("--queued-for", default=30.0, show_default=True, help="Seconds a run may wait.")
@with_appcontext
def sync_pending(queued_for: float) -> None:
    """Run syncs nobody is running (queued too long, or abandoned by a stopped worker), and
    send the patients' entries to clinics that are due (new, or failed and due a retry)."""
    from portal.sync import writeback
    from portal.sync.worker import run_pending, sync_settings

    factory = db.sessionmaker(current_app)
    settings = sync_settings(current_app)
    results = run_pending(factory, settings, queued_for=queued_for)
    for run_id, status in results.items():
        click.echo(f"sync run {run_id}: {status or 'taken by another worker'}")
    if not results:
        click.echo("no sync waiting")
    sent = writeback.run_due(factory, settings.smart)
    for writeback_id, state in sent.items():
        click.echo(f"entry sent to a clinic {writeback_id}: {state or 'taken by another worker'}")


# --- sandbox EHR ----------------------------------------------------------------------------
@main.group("sandbox")
def sandbox_group() -> None:
    """The sandbox EHR (demo and tests only)."""


def _instance(slug: str, port: int) -> Flask:
    from portal.sandbox.setup import build_instance, demo_instances

    for spec in demo_instances():
        if spec.slug == slug:
            return build_instance(spec, port)
    raise click.BadParameter(f"no sandbox instance {slug!r}", param_hint="--slug")


@sandbox_group.command("register-client")
@click.option("--slug", default="riverside", show_default=True, help="Sandbox instance.")
@click.option("--port", default=5001, show_default=True, help="The instance's port.")
@click.option("--client-id", required=True)
@click.option("--name", required=True)
@click.option(
    "--client-type",
    type=click.Choice(["public", "confidential-symmetric", "confidential-asymmetric"]),
    default="public",
)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--launch-url")
@click.option("--scope", help="Allowed scopes (space separated).")
@click.option("--secret", help="Client secret (confidential-symmetric).")
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sandbox_register_client(
    slug: str,
    port: int,
    client_id: str,
    name: str,
    client_type: str,
    redirect_uris: tuple[str, ...],
    launch_url: str | None,
    scope: str | None,
    secret: str | None,
    jwks_file: Path | None,
) -> None:
    """Register a SMART app with a sandbox instance."""
    from portal.sandbox.accounts import register_client
    from portal.sandbox.db import sdb

    app = _instance(slug, port)
    jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        register_client(
            session,
            client_id=client_id,
            name=name,
            client_type=client_type,
            redirect_uris=list(redirect_uris),
            launch_url=launch_url,
            scope=scope,
            secret=secret,
            jwks=jwks,
        )
    click.echo(f"registered {client_id} with sandbox {slug}")


@sandbox_group.command("serve")
@click.option("--slug", default="riverside", show_default=True)
@click.option("--port", default=5001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def sandbox_serve(slug: str, port: int, host: str) -> None:
    """Serve one sandbox instance."""
    from portal.serving import serve_all

    serve_all([(host, port, _instance(slug, port))])


@main.command("worker")
@click.option("--threads", default=4, show_default=True, help="Jobs run at once.")
@with_appcontext
def worker(threads: int) -> None:
    """Run background jobs (syncs, mail...) from the queue until SIGINT/SIGTERM."""
    from portal import jobs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxied app
    if app.config.get("JOBS_EAGER"):
        raise click.UsageError("JOBS_EAGER runs every job in-process: no worker is needed")
    # Huey handles the signals: a graceful stop lets the running jobs finish.
    jobs.consumer_of(app, threads).run()


# --- demo -----------------------------------------------------------------------------------
@main.command("demo")
@click.option("--port", default=5000, show_default=True, help="Portal port.")
@click.option(
    "--ehr-port",
    default=5001,
    show_default=True,
    help="First sandbox EHR port; further instances take the next ports.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
def demo(port: int, ehr_port: int, host: str) -> None:
    """Start the portal and the sandbox EHRs with demo patients (zero configuration)."""
    from portal.sandbox.setup import build_instance, demo_instances, register_portal
    from portal.serving import serve_all

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    portal_url = f"http://{host}:{port}"
    ehrs = []
    for i, spec in enumerate(demo_instances()):
        ehr_app = build_instance(spec, ehr_port + i, host)
        register_portal(ehr_app, portal_url)
        ehrs.append((ehr_port + i, ehr_app))

    links = [
        (f"{a.config['NAME']}: EHR launch simulator", f"{a.config['BASE_URL']}/launch")
        for _, a in ehrs
    ]
    app = create_app({"PUBLIC_URL": portal_url, "DEMO_LINKS": links})
    upgrade(db.engine(app))
    with transaction(db.sessionmaker(app)) as session:
        for _, ehr_app in ehrs:
            upsert_ehr(
                session,
                name=ehr_app.config["NAME"],
                fhir_base=ehr_app.config["FHIR_BASE"],
                client_id="portal",
                client_type="public",
            )

    click.echo(f"\n  Patient portal: {portal_url}")
    for _, ehr_app in ehrs:
        click.echo(f"  Sandbox EHR {ehr_app.config['NAME']}: {ehr_app.config['BASE_URL']}")
        click.echo(f"      FHIR base: {ehr_app.config['FHIR_BASE']}")
        click.echo(f"      EHR launch simulator: {ehr_app.config['BASE_URL']}/launch")
        click.echo(
            f"      Fault controls: {ehr_app.config['BASE_URL']}/admin/faults "
            f"(HTTP Basic: admin / {ehr_app.config['ADMIN_PASSWORD']})"
        )
    click.echo("  Demo patient logins are listed on each EHR's sign-in page.")
    click.echo("  Press Ctrl+C to stop.\n")
    sys.stdout.flush()
    serve_all([(host, port, app), *((host, p, a) for p, a in ehrs)], jobs_of=app)
