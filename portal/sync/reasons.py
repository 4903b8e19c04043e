"""Plain words for why a sync did not fetch everything: what the patient reads of a run.

Each reason is a clause naming the clinic (and the part of the record, where one search is
concerned), without a full stop, so `run_error` can say what happened to the rest. Never an
HTTP status, an exception's name or a FHIR type: those go to the logs.
"""

from __future__ import annotations

import re

from portal.smart.errors import ConnectionUnavailable, EhrUnavailable, SmartError
from portal.smart.fhir import (
    EhrBusy,
    FhirRequestError,
    OutOfTime,
    RepeatedPage,
    TooLarge,
    TooManyPages,
    Unreadable,
    UnsafeLink,
)

MAX_LENGTH = 500  # SyncRun.error is read in one line of the status
GENERAL = "Some of your record could not be fetched"
# What runs ended before these words were written could hold: an HTTP status, an exception's
# name, a FHIR element of the answer.
_TECHNICAL = re.compile(r"\b[1-5]\d\d\b|\b\w*(?:Error|Exception)\b|\bBundle\b|\bFHIR\b")


def too_many_pages(ehr: str, label: str) -> str:
    return f"{ehr} sent more {label} than the portal reads in one go"


def too_many_records(ehr: str) -> str:
    return f"{ehr} sent more records than the portal reads in one update"


def out_of_time(ehr: str) -> str:
    return f"The update from {ehr} took longer than the portal allows"


def unavailable(exc: EhrUnavailable, ehr: str) -> str:
    """Why the rest of a run stopped once the clinic stopped answering (after every retry)."""
    if isinstance(exc, EhrBusy):
        return f"{ehr} kept saying it was too busy"
    return f"{ehr} could not be reached, or stopped answering"


def for_error(exc: SmartError, ehr: str, label: str) -> str:
    """Why one search (of `label`) ended with `exc`."""
    if isinstance(exc, ConnectionUnavailable):
        return exc.public_message.rstrip(".")
    if isinstance(exc, OutOfTime):
        return out_of_time(ehr)
    if isinstance(exc, TooManyPages):
        return too_many_pages(ehr, label)
    if isinstance(exc, TooLarge):
        return f"{ehr} sent a page of {label} larger than the portal reads"
    if isinstance(exc, Unreadable):
        return f"{ehr} sent {label} in a form the portal cannot read"
    if isinstance(exc, RepeatedPage):
        return f"{ehr} sent a link to more {label} that repeats a page already fetched"
    if isinstance(exc, UnsafeLink):
        return (
            f"{ehr} sent a link to more {label} that points outside its own record system, "
            "so the portal did not follow it"
        )
    if isinstance(exc, EhrUnavailable):
        return f"{unavailable(exc, ehr)} while sending {label}"
    if isinstance(exc, FhirRequestError) and exc.status_code in (401, 403):
        return f"{ehr} did not let the portal read {label}"
    return f"{ehr} did not send {label}"


def stopped(ehr: str) -> str:
    return f"The update from {ehr} was stopped"


def crashed(label: str) -> str:
    return f"The portal ran into a problem of its own while reading {label}"


def run_error(reason: str, labels: list[str], fetched: bool) -> str:
    """The run's error: why it stopped, and what that means for the record."""
    if not fetched:
        return f"{reason}. Nothing could be fetched this time."[:MAX_LENGTH]
    rest = [label for label in labels if label not in reason]
    text = f"{reason}; what arrived is kept."
    if rest:
        text += f" Not fully updated: {', '.join(rest)}."
    return text[:MAX_LENGTH]


def readable(error: str | None) -> str | None:
    """A stored run error as the patient reads it; one in technical words reads as a general
    sentence (the details are in the logs)."""
    if error is None or not _TECHNICAL.search(error):
        return error
    return f"{GENERAL}."
