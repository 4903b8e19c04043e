"""The sandbox EHR is fenced off: no portal module imports it (only the CLI starts it)."""

from __future__ import annotations

import ast
from pathlib import Path

PORTAL = Path(__file__).resolve().parent.parent / "portal"
ALLOWED = {PORTAL / "cli.py"}  # `portal demo` / `portal sandbox` start the sandbox


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_portal_never_imports_the_sandbox() -> None:
    offenders = []
    for path in PORTAL.rglob("*.py"):
        if path.is_relative_to(PORTAL / "sandbox") or path in ALLOWED:
            continue
        if any(
            m == "portal.sandbox" or m.startswith("portal.sandbox.") for m in imported_modules(path)
        ):
            offenders.append(str(path.relative_to(PORTAL)))
    assert offenders == []


def test_fence_check_would_catch_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from portal.sandbox.models import Token\n")
    assert "portal.sandbox.models" in imported_modules(sample)
