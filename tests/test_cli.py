"""The command line, run as a person runs it: a separate process with its own CARDVEND_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, ROOT, drop_pg_schema, pg_available

HEADER = "customer_no,name,address,phone,meter_no,meter_kind,tariff_plan,office,ct_ratio,pt_ratio\n"


def run(
    home: Path,
    *args: str,
    lang: str = "en",
    env: dict[str, str] | None = None,
    exe: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CARDVEND_")}
    full_env.update({"CARDVEND_HOME": str(home), "CARDVEND_LANG": lang}, **(env or {}))
    return subprocess.run(
        [*(exe or [sys.executable, str(ROOT / "main.py")]), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    r = run(home, "demo")
    assert r.returncode == 0, r.stderr
    return home


def test_init_creates_database_under_home(tmp_path: Path) -> None:
    r = run(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    assert "Database ready at revision 00" in r.stdout
    assert (tmp_path / "data" / "cardvend.db").exists()
    assert (tmp_path / "logs" / "cardvend.log").exists()


def test_init_gives_each_install_its_own_counter_id(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        r = run(tmp_path / name, "init")
        assert r.returncode == 0, r.stderr
        settings = json.loads((tmp_path / name / "config" / "settings.json").read_text())
        ids.append(settings["counter_id"])
        assert f"This counter's id: {ids[-1]}" in r.stdout
    assert ids[0] != ids[1] and all(i.startswith("C-") and len(i) == 10 for i in ids)
    r = run(tmp_path / "a", "init")  # kept when run again
    assert r.returncode == 0 and "This counter's id" not in r.stdout
    assert (
        json.loads((tmp_path / "a" / "config" / "settings.json").read_text())["counter_id"]
        == ids[0]
    )
    r = run(tmp_path / "c", "init", "--counter-id", "HALL2-C07")
    assert r.returncode == 0 and "HALL2-C07" in r.stdout
    settings = json.loads((tmp_path / "c" / "config" / "settings.json").read_text())
    assert settings["counter_id"] == "HALL2-C07"
    r = run(tmp_path / "d", "init", "--counter-id", "C01\n")
    assert r.returncode == 1 and "--counter-id" in r.stderr and "Traceback" not in r.stderr
    # demo mode keeps its counter C01
    assert run(tmp_path / "e", "demo").returncode == 0
    assert not (tmp_path / "e" / "config" / "settings.json").exists()


def test_home_option_and_db_option(tmp_path: Path) -> None:
    other = tmp_path / "other"
    r = run(tmp_path, "--home", str(other), "init")
    assert r.returncode == 0 and (other / "data" / "cardvend.db").exists()
    db = tmp_path / "picked.db"
    r = run(tmp_path, "--db", f"sqlite:///{db}", "init")
    assert r.returncode == 0 and db.exists()
    r = run(tmp_path, "init", env={"CARDVEND_DB": str(tmp_path / "env.db")})
    assert r.returncode == 0 and (tmp_path / "env.db").exists()


def test_demo_is_idempotent(home: Path) -> None:
    r = run(home, "demo")
    assert r.returncode == 0
    assert "0 operators, 0 tariff plans, 0 customers added" in r.stdout


def test_find_json(home: Path) -> None:
    r = run(home, "customers", "find", "200000000010", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data) == 1
    c = data[0]
    assert (c["customer_no"], c["meter_no"], c["meter_kind"], c["status"]) == (
        "100000000010",
        "200000000010",
        "remote",
        "active",
    )
    assert c["name"]
    r = run(home, "customers", "find", "王", "--json")
    names = [c["name"] for c in json.loads(r.stdout)]
    assert names and all(n.startswith("王") for n in names)


def test_demo_archive_shape(home: Path) -> None:
    first = json.loads(run(home, "customers", "show", "100000000001", "--json").stdout)
    last = json.loads(run(home, "customers", "show", "100000001000", "--json").stdout)
    assert first["meter_no"] == "200000000001" and last["meter_no"] == "200000001000"
    assert last["meter_kind"] == "remote" and first["meter_kind"] == "card"
    r = run(home, "customers", "show", "100000001001")
    assert r.returncode == 1 and "100000001001" in r.stderr


def test_tariffs_list_json(home: Path) -> None:
    r = run(home, "tariffs", "list", "--json")
    assert r.returncode == 0, r.stderr
    plans = {p["code"]: p for p in json.loads(r.stdout)}
    assert set(plans) == {"RES-FLAT", "RES-TOU", "RES-TIER"}
    assert plans["RES-TIER"]["versions"][0]["kind"] == "tiered"
    assert all(p["in_force"] == 1 for p in plans.values())


def test_import_reports_bad_rows_and_exit_code(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text(
        HEADER + "700000000001,甲,,,800000000001,card,RES-FLAT,DEMO,1,1\n"
        "70000000000x,乙,,,800000000002,card,RES-FLAT,DEMO,1,1\n",
        encoding="utf-8",
    )
    r = run(home, "customers", "import", str(f))
    assert r.returncode == 1
    assert "line 3" in r.stderr and "12 digits" in r.stderr
    assert "Imported 1 of 2 rows" in r.stdout
    r = run(home, "customers", "find", "700000000001", "--json")
    assert json.loads(r.stdout)[0]["name"] == "甲"


def test_chinese_messages(home: Path) -> None:
    r = run(home, "customers", "show", "100000001001", lang="zh_CN")
    assert r.returncode == 1
    assert any("\u4e00" <= ch <= "\u9fff" for ch in r.stderr), r.stderr


def test_usage_errors_exit_2(home: Path) -> None:
    assert run(home, "no-such-command").returncode == 2
    assert run(home, "customers").returncode == 2
    assert run(home, "customers", "find").returncode == 2


def test_errors_are_one_line_exit_1(tmp_path: Path) -> None:
    r = run(tmp_path, "customers", "find", "王")  # no database yet
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "cardvend init" in r.stderr
    r = run(tmp_path, "--db", "nosuchdb://x/y", "init")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = run(tmp_path, "customers", "import", str(tmp_path / "missing.csv"))
    assert r.returncode == 1 and "missing.csv" in r.stderr and r.stderr.count("\n") == 1


def test_console_script() -> None:
    exe = Path(sys.executable).parent / "cardvend"
    assert exe.exists(), "the cardvend console script is installed by pip install -e ."
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "customers" in r.stdout


def test_cli_on_postgresql(tmp_path: Path) -> None:
    if not pg_available():
        pytest.skip(f"no PostgreSQL server at {PG_URL}")
    import uuid

    from sqlalchemy import text

    from app.persistence.db import make_engine

    schema = "cli_" + uuid.uuid4().hex[:10]
    eng = make_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        assert run(tmp_path, "--db", url, "demo").returncode == 0
        r = run(tmp_path, "--db", url, "customers", "find", "100000000500", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["meter_no"] == "200000000500"
    finally:
        drop_pg_schema(schema)
