"""What the installed application carries besides its code: the wheel (setup.cfg package_data) and
the PyInstaller bundle (packaging/cardvend.spec) ship the translations, the receipt font, both
sets of Alembic migrations and the published contract, and find them once installed.

Building and starting the bundle itself takes minutes: .ci/dist-smoke (tests/test_dist_bundle.py).
"""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from app.resources import resource_dir
from tests.conftest import ROOT
from tests.rigs.cli import run

SPEC = ROOT / "packaging" / "cardvend.spec"
# what the installed application reads from disk, by path relative to the checkout
MUST_SHIP = [
    "resources/locale/zh_CN/LC_MESSAGES/cardvend.po",
    "resources/locale/en/LC_MESSAGES/cardvend.po",
    "resources/fonts/wqy-microhei.ttc",
    "resources/fonts/LICENSE-wqy-microhei.txt",
    "app/persistence/migrations/env.py",
    "app/persistence/migrations/versions/0001_initial_schema.py",
    "sync/central/migrations/env.py",
    "sync/openapi.json",
]


def spec_data() -> list[tuple[str, str]]:
    """The spec's DATA list (the spec runs only inside PyInstaller: read, not imported)."""
    for node in ast.parse(SPEC.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DATA":
            return [tuple(pair) for pair in ast.literal_eval(node.value)]
    raise AssertionError("packaging/cardvend.spec has no DATA list")


def package_data_files() -> set[str]:
    """Every file setup.cfg's package_data puts into the wheel, relative to the checkout."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    files: set[str] = set()
    for package, patterns in cfg["options.package_data"].items():
        for pattern in patterns.replace("\n", ",").split(","):
            if pattern.strip():
                base = ROOT / package.replace(".", "/")
                files |= {p.relative_to(ROOT).as_posix() for p in base.glob(pattern.strip())}
    return files


def test_must_ship_files_exist() -> None:
    missing = [f for f in MUST_SHIP if not (ROOT / f).is_file()]
    assert not missing


def test_the_spec_carries_every_data_file_the_wheel_ships() -> None:
    data = spec_data()
    for src, dest in data:
        assert (ROOT / src).exists(), src
        # the bundle keeps the checkout's layout: code finds its data the same way in both
        assert dest == (src if (ROOT / src).is_dir() else str(Path(src).parent)), (src, dest)
    shipped = package_data_files()
    assert set(MUST_SHIP) <= shipped
    uncovered = [f for f in shipped if not any(f == s or f.startswith(s + "/") for s, _ in data)]
    assert not uncovered, f"package data missing from packaging/cardvend.spec DATA: {uncovered}"


def test_resources_are_found_in_the_checkout() -> None:
    assert resource_dir("locale") == ROOT / "resources" / "locale"
    assert (resource_dir("fonts") / "wqy-microhei.ttc").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (the build leaves build/ and egg-info behind)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "screenshots", "*.egg-info")
    for name in ("app", "ui", "cardio", "printing", "sync", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("main.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp / "out"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
           "-w", str(out), str(src)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    (found,) = out.glob("cardvend-0.1.0-*.whl")
    return found


def test_the_wheel_carries_resources_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(MUST_SHIP) <= names
    assert "main.py" in names and "resources/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "resources/screenshots/"))]


def test_the_installed_wheel_finds_its_catalog_and_font(wheel: Path, tmp_path: Path) -> None:
    """Installed (not editable) into a folder of its own: app.i18n reads the zh_CN catalog and
    the receipt font from there, not from this checkout."""
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
           str(wheel)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from app import i18n; from printing import fonts\n"
        "print(i18n.LOCALE_DIR); print(fonts.FONT_FILE.is_file(), fonts.FONT_FILE)\n"
        "print(i18n.translate('Sell', 'zh_CN'))\n"
    )
    # -S: none of the checkout's editable install; the dependencies from this environment
    site = sysconfig.get_paths()["purelib"]
    r = subprocess.run([sys.executable, "-S", "-c", probe, str(target), site],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    locale_dir, font, sell = r.stdout.splitlines()
    assert Path(locale_dir) == target / "resources" / "locale"
    assert font == f"True {target / 'resources' / 'fonts' / 'wqy-microhei.ttc'}"
    assert sell == "售电"


def test_version_and_the_smoke_hook_from_the_checkout(tmp_path: Path) -> None:
    """What .ci/dist-smoke asks of the bundle, asked of the checkout: --version, and the window
    that quits by itself once shown (CARDVEND_SMOKE_QUIT_MS) after loading every page."""
    r = run(tmp_path, "--version")
    assert (r.returncode, r.stdout) == (0, "cardvend 0.1.0\n"), r.stderr
    env = {"QT_QPA_PLATFORM": "offscreen", "CARDVEND_SMOKE_QUIT_MS": "100"}
    r = run(tmp_path, "-v", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "login window shown" in r.stderr and "smoke: start-up done" in r.stderr, r.stderr
    assert "pages loaded, ok" in r.stderr, r.stderr[-3000:]
