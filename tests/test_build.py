"""The build id keys prepared pages and stored facts: it covers all of the portal's code,
templates and static files, so a deploy that changes any of them makes them miss."""

from __future__ import annotations

from pathlib import Path

from portal import build


def test_it_covers_every_module_template_and_static_file() -> None:
    covered = {str(p.relative_to(build.ROOT)) for p in build.files()}
    for name in (
        "portal/smart/scopes.py",  # what a page may show of a clinic's grant
        "portal/models.py",
        "portal/phr/merge.py",
        "portal/web/records.py",
        "templates/records/summary.html",
        "static/portal.css",
    ):
        assert name in covered, name
    package = {str(p.relative_to(build.ROOT)) for p in build.PACKAGE.rglob("*.py")}
    assert {p for p in package if "__pycache__" not in p} <= covered


def test_any_change_to_a_file_changes_it(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.html").write_text("<p>hello</p>\n")
    paths = sorted(tmp_path.iterdir())
    before = build.digest_of(paths, tmp_path)
    assert build.digest_of(paths, tmp_path) == before  # stable
    (tmp_path / "b.html").write_text("<p>hello!</p>\n")
    changed = build.digest_of(paths, tmp_path)
    (tmp_path / "b.html").rename(tmp_path / "c.html")
    renamed = build.digest_of(sorted(tmp_path.iterdir()), tmp_path)
    assert len({before, changed, renamed}) == 3
