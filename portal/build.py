"""The build id: a digest of all of the portal's code, templates and static files.

What is kept across requests and drawn by the code (prepared pages, stored facts) is keyed by
it, so a deploy that changes any of it (a scope, a model, a template, a folding rule) never
serves what the old code made.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent  # templates/ and static/ sit beside the package


def files() -> list[Path]:
    """Every file the build id covers, in a stable order."""
    found = [p for p in PACKAGE.rglob("*.py")]
    for folder in (ROOT / "templates", ROOT / "static"):
        found += [p for p in folder.rglob("*") if p.is_file()]
    return sorted(p for p in found if "__pycache__" not in p.parts)


@functools.cache
def build_id() -> str:
    return digest_of(files(), ROOT)


def digest_of(paths: list[Path], root: Path) -> str:
    """The digest of these files' names (under `root`) and contents."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
