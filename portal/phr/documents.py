"""Documents: clinical notes (DocumentReference) and reports sent as documents (presentedForm).

Plain text is shown as text; HTML is never rendered as HTML (it is turned into plain text);
PDFs and anything else are offered as downloads.

An attachment the EHR only links (`url`, e.g. `Binary/123`) is fetched from the clinic when
the patient opens it, with the connection's token, and only when the link is on that
connection's FHIR base: a link anywhere else is never requested.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from portal.models import FhirRecord
from portal.phr import merge
from portal.phr.names import category_text
from portal.phr.records import Page, Records, Row
from portal.phr.words import concept_text, date_text, status_words, tidy, when_text
from portal.smart.errors import ConnectionUnavailable, FhirRequestError, SmartError
from portal.smart.fhir import MAX_BINARY_BYTES, FhirClient, TooLarge, within_base
from portal.smart.settings import SmartSettings, resolve
from portal.smart.tokens import TokenSource

log = logging.getLogger(__name__)

DOCUMENTS_PER_PAGE = 20
INLINE_LIMIT = 20_000  # characters of text shown in the page; the rest is in the download
TEXT_TYPES = ("text/plain",)
HTML_TYPES = ("text/html", "application/xhtml+xml")
EXTENSIONS = {
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/xml": "xml",
    "application/xml": "xml",
    "text/rtf": "rtf",
    "image/png": "png",
    "image/jpeg": "jpg",
}
# What a download is served as: anything that a browser could run or render stays opaque.
SERVED_AS = {"application/pdf": "application/pdf", "text/plain": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class Attachment:
    index: int
    title: str
    kind: str  # "Text", "PDF", "Web page", "Image", "File"
    text: str | None  # plain text to show in the page
    truncated: bool
    downloadable: bool
    size: str | None
    remote: bool  # kept at the clinic (only a link), not copied into the portal
    fetchable: bool = False  # remote, and its link is on the clinic's FHIR base


@dataclass(frozen=True)
class Document:
    id: int
    title: str
    kind: str
    date: str | None
    author: str | None
    status: str | None
    description: str | None
    attachments: tuple[Attachment, ...]
    source: str
    also: tuple[str, ...] = ()  # other sources that sent the same document or report
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    data: bytes

    def __repr__(self) -> str:  # record contents stay out of logs and tracebacks
        return f"Download({self.filename!r}, {self.content_type!r}, {len(self.data)} bytes)"


class DocumentUnavailable(Exception):
    """A linked document the clinic did not send; `message` says why in plain words."""

    def __init__(self, status: int, message: str, *, reconnect: bool = False) -> None:
        super().__init__(message)
        self.status = status  # what the page answers with
        self.message = message
        self.reconnect = reconnect  # the patient can fix it by connecting the clinic again


# What the documents page lists: notes, and the reports that came with a document.
CATEGORIES = ("documents", "reports")
LISTED = sa.or_(
    FhirRecord.category == "documents",
    FhirRecord.raw["presentedForm"].as_string().is_not(None),
)


def documents(records: Records, page: int = 1, size: int = DOCUMENTS_PER_PAGE) -> Page[Document]:
    """Notes and reports that came as documents, newest first; one sent by several sources
    (same identifier, else same code at the same moment) once, and counted once."""
    return merge.listing(
        records,
        CATEGORIES,
        page,
        size,
        lambda facts: _documents(records, facts),
        stored="documents",
        where=[LISTED],
        same=merge.same_moment,
    )


def _documents(records: Records, facts: list[merge.Fact]) -> list[Document]:
    rows = [f.row for f in facts]
    names = records.names(rows, "author", "performer", "resultsInterpreter")
    return [merge.marked(records, f, _document(records, f.row, names)) for f in facts]


def _document(records: Records, row: Row, names: dict[tuple[int, str], str]) -> Document:
    raw = row.raw
    # A disconnected clinic's records stay, but nothing more is fetched from it.
    base = _fhir_base(records, row, usable_only=True)
    attachments = [
        _attachment(i, a, base)
        for i, a in enumerate(_attachments(raw))
        if isinstance(a, dict)  # defensive: malformed entries are skipped
    ]
    people = [records.ref_name(names, row, a) for a in raw.get("author") or []]
    people += [records.ref_name(names, row, a) for a in raw.get("performer") or []]
    if row.resource_type == "DiagnosticReport":
        kind = category_text(raw.get("category")) or "Report"
        title = concept_text(raw.get("code")) or tidy(row.display) or "Report"
        description = raw.get("conclusion")
    else:
        kind = category_text(raw.get("category")) or "Document"
        title = (
            concept_text(raw.get("type")) or raw.get("description") or tidy(row.display) or "Note"
        )
        description = raw.get("description") if raw.get("description") != title else None
    status = raw.get("docStatus") or row.status
    return Document(
        id=row.id,
        title=str(title),
        kind=str(kind),
        date=when_text(raw, "date", "effectiveDateTime", "effectivePeriod", "issued")
        or date_text(row.effective_at),
        author=", ".join(dict.fromkeys(p for p in people if p)) or None,
        status=status_words(status) if status not in ("current", "final", None) else None,
        description=str(description) if description else None,
        attachments=tuple(attachments),
        source=records.source(row),
    )


def _attachments(raw: dict[str, Any]) -> list[Any]:
    if raw.get("resourceType") == "DiagnosticReport":
        return list(raw.get("presentedForm") or [])
    return [c.get("attachment") for c in raw.get("content") or [] if isinstance(c, dict)]


def _attachment(index: int, attachment: dict[str, Any], fhir_base: str | None) -> Attachment:
    content_type = _content_type(attachment)
    data = _decode(attachment.get("data"))
    text = None
    truncated = False
    if data is not None and content_type in TEXT_TYPES:
        text = data.decode("utf-8", errors="replace")
    elif data is not None and content_type in HTML_TYPES:
        text = html_to_text(data.decode("utf-8", errors="replace"))
    if text is not None and len(text) > INLINE_LIMIT:
        text, truncated = text[:INLINE_LIMIT], True
    size = attachment.get("size") or (len(data) if data is not None else None)
    return Attachment(
        index=index,
        title=str(attachment.get("title") or f"Attachment {index + 1}"),
        kind=_kind(content_type),
        text=text,
        truncated=truncated,
        downloadable=data is not None,
        size=_size(int(size)) if isinstance(size, int | str) and str(size).isdigit() else None,
        remote=data is None and bool(attachment.get("url")),
        fetchable=data is None and linked_url(attachment.get("url"), fhir_base) is not None,
    )


def _content_type(attachment: dict[str, Any]) -> str:
    return str(attachment.get("contentType") or "").split(";")[0].strip().lower()


def _fhir_base(records: Records, row: Row, *, usable_only: bool = False) -> str | None:
    """The FHIR base of the connection a record came from (the only place its links may go)."""
    for connection in records.connections:
        if connection.id != row.connection_id or connection.ehr is None:
            continue
        if usable_only and connection.status == "disconnected":
            return None
        return connection.ehr.fhir_base
    return None


def linked_url(url: Any, fhir_base: str | None) -> str | None:
    """Where a linked attachment is fetched from: on the connection's FHIR base, or nowhere.

    A relative link (`Binary/123`) is resolved against the base; an absolute one must already
    be under it. Anything else (another host, port or path, a `..` that climbs out, a
    fragment, credentials) is None: the token never goes there.
    """
    if not isinstance(url, str) or not url.strip() or not fhir_base:
        return None
    base = fhir_base.rstrip("/")
    resolved = urljoin(base + "/", url.strip())
    parts = urlsplit(resolved)
    if parts.fragment or not within_base(resolved, base):  # dot segments in any spelling too
        return None
    if parts.path.rstrip("/") == urlsplit(base).path.rstrip("/"):
        return None  # the FHIR base itself is no document
    return resolved


def download(
    records: Records,
    record_id: int,
    index: int,
    *,
    session_factory: sessionmaker[Session] | None = None,
    settings: SmartSettings | None = None,
    max_bytes: int = MAX_BINARY_BYTES,
) -> Download | None:
    """An attachment's bytes, only from this person's own visible records.

    With `session_factory` (for the connection's token), an attachment the EHR only links is
    fetched from the clinic; failing that, DocumentUnavailable says why. None: no such
    attachment, or nothing the portal may fetch.
    """
    row = records.record(record_id)
    if row is None or row.category not in ("documents", "reports"):
        return None
    attachments = _attachments(row.raw)
    if not 0 <= index < len(attachments) or not isinstance(attachments[index], dict):
        return None
    attachment = attachments[index]
    content_type = _content_type(attachment)
    data = _decode(attachment.get("data"))
    if data is None:
        base = _fhir_base(records, row)
        url = linked_url(attachment.get("url"), base)
        if url is None or base is None or session_factory is None:
            return None
        data, sent_as = _fetch(
            records, row, base, url, content_type, session_factory, settings, max_bytes
        )
        content_type = content_type or sent_as
    title = str(attachment.get("title") or concept_text(row.raw.get("type")) or "document")
    stem = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:60] or "document"
    extension = EXTENSIONS.get(content_type, "bin")
    if stem.endswith(f"-{extension}"):
        stem = stem[: -len(extension) - 1]
    return Download(
        filename=f"{stem}.{extension}",
        content_type=SERVED_AS.get(content_type, "application/octet-stream"),
        data=data,
    )


def _fetch(
    records: Records,
    row: Row,
    fhir_base: str,
    url: str,
    content_type: str,
    session_factory: sessionmaker[Session],
    settings: SmartSettings | None,
    max_bytes: int,
) -> tuple[bytes, str]:
    """A linked attachment's bytes from the clinic, and the media type the clinic gave them."""
    source = records.source(row) or "Your clinic"
    settings = resolve(settings)
    tokens = TokenSource(session_factory, row.connection_id, settings)
    try:
        with settings.http_client() as http:
            client = FhirClient(fhir_base, tokens, http, settings)
            found = client.binary(url, content_type or None, max_bytes=max_bytes)
    except SmartError as exc:
        # The class and status only: never the URL's query, the token or the content.
        status = getattr(exc, "status_code", None)
        log.warning(
            "document %s attachment of connection %s not fetched: %s (%s)",
            row.id,
            row.connection_id,
            type(exc).__name__,
            status,
        )
        raise _unavailable(exc, source, max_bytes) from None
    return found.data, (found.content_type or "").split(";")[0].strip().lower()


def _unavailable(exc: SmartError, source: str, max_bytes: int) -> DocumentUnavailable:
    """What the patient reads when a linked document could not be fetched."""
    if isinstance(exc, ConnectionUnavailable):
        return DocumentUnavailable(
            409,
            f"Your connection to {source} has ended, so this document cannot be fetched. "
            "Connect again in My clinics; everything already in the portal is still here.",
            reconnect=True,
        )
    if isinstance(exc, TooLarge):
        return DocumentUnavailable(
            502,
            f"This document is larger than {max_bytes // (1024 * 1024)} MB, too large to "
            f"fetch through the portal. Ask {source} for a copy.",
        )
    status = exc.status_code if isinstance(exc, FhirRequestError) else None
    if status in (404, 410):
        return DocumentUnavailable(404, f"{source} no longer has this document.")
    if status in (401, 403):
        return DocumentUnavailable(
            502,
            f"{source} did not let the portal fetch this document. Connecting again in "
            "My clinics, and allowing documents to be shared, may help.",
            reconnect=True,
        )
    return DocumentUnavailable(
        502, f"{source} did not send this document just now. Try again later."
    )


def _decode(data: Any) -> bytes | None:
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def _kind(content_type: str) -> str:
    if content_type == "application/pdf":
        return "PDF"
    if content_type in TEXT_TYPES:
        return "Text"
    if content_type in HTML_TYPES:
        return "Web page (shown as text)"
    if content_type.startswith("image/"):
        return "Image"
    return "File"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    return f"{size / (1024 * 1024):.1f} MB"


class _TextOnly(HTMLParser):
    """Collects the text of an HTML document; scripts and styles are dropped, never run."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The readable text of an HTML document (for showing escaped, never as HTML)."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()
