"""Setting up demo instances: patients loaded once, copies under other ids, apps from config."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from portal.db import transaction
from portal.sandbox.db import sandbox_engine, sdb
from portal.sandbox.models import Client, FhirResource, PatientUser
from portal.sandbox.setup import (
    CLIENTS_FILE,
    InstanceSpec,
    build_instance,
    demo_instances,
    load_patients,
    register_portal,
)
from tests.sandbox.conftest import DATA, sandbox_database
from tests.sandbox.tokens import bearer, mint_token

SPEC = InstanceSpec(
    slug="setuptest",
    name="Setup Test Clinic",
    bundles=("enda_schaefer",),
    copies=(("enda_schaefer", "another-clinic"),),
)


def test_shipped_instances_name_existing_bundles() -> None:
    specs = demo_instances()
    assert [s.slug for s in specs] == ["riverside", "lakeside"]
    for spec in specs:
        for name in [*spec.bundles, *(b for b, _ in spec.copies)]:
            assert (DATA / f"{name}.json.gz").exists(), name
    riverside, lakeside = specs
    assert not set(riverside.bundles) & set(lakeside.bundles)  # different patients


def test_build_loads_once_copies_under_new_ids_and_registers_apps(instance_dir: Path) -> None:
    url, schema = sandbox_database("setuptest", instance_dir)
    (instance_dir / CLIENTS_FILE).write_text(
        json.dumps(
            [
                {
                    "client_id": "configured-app",
                    "name": "Configured app",
                    "client_type": "public",
                    "redirect_uris": ["http://localhost:8000/cb"],
                    "scope": "openid fhirUser patient/*.rs",
                },
                {
                    "client_id": "elsewhere-only",
                    "name": "Not for this instance",
                    "client_type": "public",
                    "redirect_uris": ["http://localhost:8000/cb"],
                    "instances": ["riverside"],
                },
            ]
        )
    )
    try:
        app = build_instance(SPEC, 5999, DATABASE_URL=url, DB_SCHEMA=schema)
    finally:
        (instance_dir / CLIENTS_FILE).unlink()
    register_portal(app, "http://127.0.0.1:5000")
    register_portal(app, "http://127.0.0.1:5000")  # idempotent

    assert load_patients(app, SPEC) == 0  # a restart keeps the store (and its writes)
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        patients = session.scalars(
            sa.select(FhirResource).where(FhirResource.resource_type == "Patient")
        ).all()
        assert len(patients) == 2
        original, copy = sorted(
            patients, key=lambda p: p.resource_id != "d070e7dd-4d25-4c52-9fb2-78d232e1cf2c"
        )
        assert original.resource_id == "d070e7dd-4d25-4c52-9fb2-78d232e1cf2c"
        assert copy.resource_id != original.resource_id
        assert copy.content["name"] == original.content["name"]  # the same person
        # The copy's records point at the copy, never at the original's ids.
        copied_obs = session.scalars(
            sa.select(FhirResource).where(
                FhirResource.resource_type == "Observation",
                FhirResource.patient_id == copy.resource_id,
            )
        ).all()
        assert copied_obs
        assert all(original.resource_id not in json.dumps(o.content) for o in copied_obs)

        users = session.scalars(sa.select(PatientUser).order_by(PatientUser.username)).all()
        assert [u.username for u in users] == ["enda", "enda2"]
        assert {u.patient_id for u in users} == {original.resource_id, copy.resource_id}

        clients = {c.client_id: c for c in session.scalars(sa.select(Client))}
        assert set(clients) == {"configured-app", "portal"}
        assert clients["portal"].redirect_uris == ["http://127.0.0.1:5000/oauth/callback"]
        assert clients["portal"].launch_url == "http://127.0.0.1:5000/launch"
    sdb.engine(app).dispose()


def test_writes_survive_a_restart(instance_dir: Path) -> None:
    url, schema = sandbox_database("restart", instance_dir)
    spec = InstanceSpec(
        slug="restart", name="Restart Clinic", bundles=("enda_schaefer",), copies=()
    )
    app = build_instance(spec, 5998, DATABASE_URL=url, DB_SCHEMA=schema)
    patient = "d070e7dd-4d25-4c52-9fb2-78d232e1cf2c"
    token = mint_token(app, patient)
    weight = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {
            "value": 21.5,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    created = app.test_client().post(
        "/fhir/Observation",
        json=weight,
        headers={**bearer(token), "Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201, created.text
    new_id = created.json["id"]
    sdb.engine(app).dispose()

    restarted = build_instance(spec, 5998, DATABASE_URL=url, DB_SCHEMA=schema)
    read = restarted.test_client().get(f"/fhir/Observation/{new_id}", headers=bearer(token))
    assert read.status_code == 200
    assert read.json["valueQuantity"]["value"] == 21.5
    sdb.engine(restarted).dispose()


def test_a_store_from_an_older_sandbox_is_made_anew(tmp_path: Path) -> None:
    """The sandbox has no migrations: a store whose tables lack a column is recreated."""
    url = f"sqlite:///{tmp_path / 'old-sandbox.db'}"
    old = sa.create_engine(url)
    with old.begin() as conn:
        conn.execute(sa.text("CREATE TABLE sb_launch (id VARCHAR(64) PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO sb_launch (id) VALUES ('from-the-old-version')"))
    old.dispose()
    engine = sandbox_engine(url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("sb_launch")}
    assert "practitioner_id" in columns
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sb_launch")).scalar() == 0
    again = sandbox_engine(url)  # an up-to-date store is kept as it is
    with again.begin() as conn:
        conn.execute(sa.text("INSERT INTO sb_fault (name, value) VALUES ('kept', 1)"))
    kept = sandbox_engine(url)
    with kept.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM sb_fault")).all() == [("kept",)]
    for e in (engine, again, kept):
        e.dispose()
