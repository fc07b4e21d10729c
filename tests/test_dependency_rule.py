"""The dependency rule of ../shared/DESIGN.md, checked on every import statement."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "ui", "cardio", "printing", "sync")
OURS = set(PACKAGES) | {"main", "tests"}
# third-party top-level module -> the only package allowed to import it
EXCLUSIVE = {
    "PySide6": "ui",
    "shiboken6": "ui",
    "smartcard": "cardio",
    "serial": "cardio",
    "requests": "sync",
    "reportlab": "printing",
    "dlt645": "tests",  # the independent DL/T 645 implementation: a cross-check, never shipped
}
# our packages each package may import
ALLOWED_OURS = {
    "app": set(),
    "cardio": {"app"},
    "printing": {"app"},
    "sync": {"app"},
    "ui": {"app"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, str(node.args[0].value)))
    return found


def violations(package: str, path: Path) -> list[str]:
    bad = []
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for line, module in imports_of(path):
        top = module.split(".")[0]
        owner = EXCLUSIVE.get(top)
        if owner is not None and owner != package:
            bad.append(f"{shown}:{line} imports {module} (only {owner}/ may)")
        if top in OURS and top != package and top not in ALLOWED_OURS[package]:
            bad.append(f"{shown}:{line} imports {module} ({package}/ may not)")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_dependency_rule(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    problems = [v for f in files for v in violations(package, f)]
    assert problems == []


def test_checker_catches_violations(tmp_path: Path) -> None:
    """The check itself can fail: a forbidden import in a scratch file is reported."""
    fake = tmp_path / "probe.py"
    fake.write_text(
        "import requests\nfrom ui.app import run_gui\nimport PySide6.QtCore\n"
        "from app.money import parse_yuan\nfrom dlt645 import DLT645Protocol\n"
    )
    assert len(violations("app", fake)) == 4
    assert len(violations("cardio", fake)) == 4  # requests, ui, Qt and dlt645; app is allowed
    assert violations("ui", fake) == [
        f"{fake}:1 imports requests (only sync/ may)",
        f"{fake}:5 imports dlt645 (only tests/ may)",
    ]


def test_top_level_layout() -> None:
    for name in (
        "app",
        "ui",
        "cardio",
        "printing",
        "sync",
        "resources",
        "tests",
        "main.py",
        "setup.cfg",
        "pyproject.toml",
        "Makefile",
        "README.md",
        ".ci/run",
    ):
        assert (ROOT / name).exists(), name
    for package in PACKAGES:
        assert (ROOT / package / "README.md").exists(), f"{package}/README.md"


def test_imports_between_test_modules(tmp_path: Path) -> None:
    """Shared rigs live in tests/rigs/ (and conftest.py, cardkit.py, ...), never in a test
    module: a test module that imports another drags its fixtures and tests along."""

    def test_module_imports(path: Path) -> list[str]:
        return [
            f"{path.name}:{line} imports {name}"
            for line, name in imports_of(path)
            if name.startswith("tests.test_")
        ] + [
            f"{path.name}:{node.lineno} imports from tests a test module"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom)
            and node.module == "tests"
            and any(alias.name.startswith("test_") for alias in node.names)
        ]

    found = [v for p in sorted((ROOT / "tests").rglob("*.py")) for v in test_module_imports(p)]
    assert found == []
    fake = tmp_path / "test_fake.py"
    fake.write_text("from tests.test_cli import run\nfrom tests import test_sync\n")
    assert test_module_imports(fake) == [
        "test_fake.py:1 imports tests.test_cli",
        "test_fake.py:2 imports from tests a test module",
    ]
