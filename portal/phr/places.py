"""Where each item of the summary is shown in full: its section's page (and page number), its
place on that page, or a page of its own (a lab test's, a vital sign's)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.models import FhirRecord
from portal.phr import labs, lists, vitals
from portal.phr.lists import Immunization
from portal.phr.records import Records
from portal.phr.summary import Summary

IMMUNIZATIONS_PER_PAGE = 50  # as portal.phr.lists.immunizations pages them

# The anchor of an item on its section's page: `{kind}-{id}` (the list templates set it).
ANCHOR_KINDS = ("problem", "medication", "allergy", "immunization")


def anchor(kind: str, item_id: int) -> str:
    """The element id of an item on its section's page."""
    assert kind in ANCHOR_KINDS
    return f"{kind}-{item_id}"


@dataclass(frozen=True)
class SummaryPlaces:
    """For the summary's items: the lab test page of each result (by result id), the vital
    sign page of each latest reading (by the kind's name), the immunizations page of each
    vaccine (by item id)."""

    lab_tests: dict[int, str]
    vital_kinds: dict[str, str]
    immunization_pages: dict[int, int]


def of_summary(records: Records, summary: Summary) -> SummaryPlaces:
    return SummaryPlaces(
        lab_tests=lab_tests(records, [result.id for _name, result in summary.labs]),
        vital_kinds={k.name: k.key for k in vitals.KINDS},
        immunization_pages=immunization_pages(records, summary.immunizations),
    )


def lab_tests(records: Records, result_ids: list[int]) -> dict[int, str]:
    """The test (`labs.test_key`, the key of its own page) of each of these results."""
    if not result_ids:
        return {}
    rows = records.rows(labs.RESULTS, where=[FhirRecord.id.in_(result_ids)], elements=("code",))
    return {row.id: labs.test_key(row.code, row.display) for row in rows}


def immunization_pages(
    records: Records, items: list[Immunization], size: int = IMMUNIZATIONS_PER_PAGE
) -> dict[int, int]:
    """The page of the immunizations list (each dose once, newest first) that shows each of
    these items (the latest doses)."""
    places = lists.immunization_places(records) if items else {}
    return {i.id: places[i.id] // size + 1 for i in items if i.id in places}
