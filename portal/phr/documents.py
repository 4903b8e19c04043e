"""Documents: clinical notes (DocumentReference) and reports sent as documents (presentedForm).

Plain text is shown as text; HTML is never rendered as HTML (it is turned into plain text);
PDFs and anything else are offered as downloads.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa

from portal.models import FhirRecord
from portal.phr.records import Page, Records, Row
from portal.phr.words import concept_text, date_text, status_words, tidy, when_text

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


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    data: bytes


def documents(records: Records, page: int = 1, size: int = DOCUMENTS_PER_PAGE) -> Page[Document]:
    """Notes and reports that came as documents, newest first."""
    where = [
        sa.or_(
            FhirRecord.category == "documents",
            FhirRecord.raw["presentedForm"].as_string().is_not(None),
        )
    ]
    rows, number, total = records.page(["documents", "reports"], page, size, where=where)
    names = records.names(rows, "author", "performer", "resultsInterpreter")
    return Page([_document(records, r, names) for r in rows], number, size, total)


def _document(records: Records, row: Row, names: dict[tuple[int, str], str]) -> Document:
    raw = row.raw
    attachments = [
        _attachment(i, a)
        for i, a in enumerate(_attachments(raw))
        if isinstance(a, dict)  # defensive: malformed entries are skipped
    ]
    people = [records.ref_name(names, row, a) for a in raw.get("author") or []]
    people += [records.ref_name(names, row, a) for a in raw.get("performer") or []]
    if row.resource_type == "DiagnosticReport":
        kind = concept_text(raw.get("category")) or "Report"
        title = concept_text(raw.get("code")) or tidy(row.display) or "Report"
        description = raw.get("conclusion")
    else:
        kind = concept_text(raw.get("category")) or "Document"
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


def _attachment(index: int, attachment: dict[str, Any]) -> Attachment:
    content_type = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
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
    )


def download(records: Records, record_id: int, index: int) -> Download | None:
    """An attachment's bytes, only from this person's own visible records."""
    row = records.record(record_id)
    if row is None or row.category not in ("documents", "reports"):
        return None
    attachments = _attachments(row.raw)
    if not 0 <= index < len(attachments) or not isinstance(attachments[index], dict):
        return None
    attachment = attachments[index]
    data = _decode(attachment.get("data"))
    if data is None:
        return None
    content_type = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
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
