"""The command line, run as a person runs it: a separate process with its own CARDVEND_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import PG_URL
from tests.conftest import drop_pg_schema
from tests.conftest import pg_available
from tests.rigs.cli import HEADER
from tests.rigs.cli import import_csv
from tests.rigs.cli import run


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
    r = import_csv(home, f)
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


def test_import_of_a_missing_file_is_one_line(home: Path, tmp_path: Path) -> None:
    r = import_csv(home, tmp_path / "missing.csv")
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


# --------------------------------------------------------------------------- strict ids

OTHER_DIGITS = [
    "１０００００００００４２",  # full-width, from a Chinese input method
    "١٠٠٠٠٠٠٠٠٠٤٢",  # Arabic-Indic
    "100000000042\n",  # a trailing newline ($ matched before it)
    "10000000004²",  # a superscript
]


@pytest.mark.parametrize("value", OTHER_DIGITS)
def test_a_customer_number_argument_is_ascii_and_whole(home: Path, value: str) -> None:
    r = run(home, "customers", "show", value)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"customer_no {value!r} is not valid: exactly 12 digits 0-9" in last


@pytest.mark.parametrize("value", [*OTHER_DIGITS[:2], "4242²"])
def test_find_says_which_digits_to_type(home: Path, value: str) -> None:
    r = run(home, "customers", "find", value)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "0-9" in r.stderr and "half-width" in r.stderr


LIFT = ("control", "lift", "100000000042", "--reason", "hospital ward")


@pytest.mark.parametrize(
    "args",
    [
        ("sell", "--customer", "１０００００００００４２", "--amount", "10", "--operator", "t01"),
        ("sell", "--customer", "100000000042", "--amount", "10", "--operator", "t01\n"),
        ("open-account", "--customer", "١٠٠٠٠٠٠٠٠٠٤٢", "--operator", "t01"),
        ("replace-card", "--customer", "100000000042", "--operator", "t01", "--approver", "s０1"),
        ("reverse", "not-a-sale-id", "--operator", "t01", "--approver", "s01"),
        ("sales", "list", "--customer", "10000000004²", "--operator", "t01"),
        ("receipt", "5D1C1F0E-8C7A-4F4E-9A53-C0A7D0E1E001", "--out", "r.pdf", "--operator", "t01"),
        ("report", "shift", "--shift", "S1", "--out", "r.pdf", "--operator", "s01"),
        ("operators", "add", "n01\n", "--role", "teller", "--operator", "a01"),
        ("operators", "disable", "ｔ01", "--operator", "a01"),
        ("audit", "verify", "--operator", "a01\n"),
        ("customers", "import", "c.csv", "--operator", "ａ01"),
        ("card", "blank", "--image", "c.img", "--serial", "０００００００００００００００１"),
        ("meter", "insert", "--meter-state", "m.json", "--image", "c.img", "--meter-no", "2²"),
        ("sync", "retry", "--all-refused", "--operator", "s01\n"),
        (*LIFT, "--operator", "ｔ01", "--approver", "s01"),
        (*LIFT, "--operator", "t01", "--approver", "s０1"),
        ("control", "resume", "100000000042", "--operator", "t01\n"),
        (*LIFT, "--operator", "t01", "--approval", "not-a-request"),
        ("counter", "register", "--central", "http://127.0.0.1:9", "--operator", "a01\n"),
    ],
)
def test_every_id_argument_is_checked_before_anything_runs(
    home: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Each of these signed in, looked up and then said "not found" or "wrong password";
    now the argument is refused at once, with what the id must look like."""
    r = run(home, *args, env={"CARDVEND_PASSWORD": "wrong", "CARDVEND_APPROVER_PASSWORD": "x"})
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "is not valid:" in last and "error: argument" in last, last
    assert not (tmp_path / "r.pdf").exists()


@pytest.mark.parametrize("day", ["2026-3-1", "20260301", "２０２６-03-01"])
def test_a_report_day_is_read_by_the_one_date_rule(home: Path, tmp_path: Path, day: str) -> None:
    """``report --day`` took whatever ``date.fromisoformat`` took (``20260301``, full-width
    digits) and answered a bad day with exit 1 after signing in; it is the date rule of every
    other day argument now: a usage error before anything runs."""
    out = tmp_path / "d.pdf"
    r = run(home, "report", "daily", "--day", day, "--out", str(out), "--operator", "s01")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "error: argument --day" in last and "is not a date" in last, last
    assert not out.exists()


def test_a_settings_file_with_a_bad_counter_id_is_one_clear_line(tmp_path: Path) -> None:
    """Loaded as it was, the counter called itself C01 on screen and 'C01\\n' everywhere else."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.json").write_text(
        json.dumps({"schema_version": 1, "counter_id": "C01\n"}), encoding="utf-8"
    )
    r = run(tmp_path, "init")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "setting counter_id 'C01\\n' is not valid" in r.stderr


# --------------------------------------------------------------------------- bounded import

IMPORT_PEAK_RSS_MB = 150  # a small import peaks near 95 MB here; a 200 MB line held is far more
# runs main.main(argv) and at exit writes the process's own peak RSS (VmHWM, in kB) to the file
# named first: /proc counts this process alone, while ru_maxrss also holds the parent's peak
# when the parent forked it (a pytest process that grew counts as the child's own)
PEAK_LAUNCHER = """\
import sys
out = sys.argv.pop(1)
rc = 1
try:
    import main
    rc = main.main(sys.argv[1:])
finally:
    with open("/proc/self/status", encoding="ascii") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w", encoding="ascii") as f:
        f.write(peak)
sys.exit(rc)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_import_of_a_200_mb_line_keeps_memory_flat(home: Path, tmp_path: Path) -> None:
    """The line arrives through a pipe, written as the import reads it: the file is never on
    disk, and the importing process alone is measured (it reports its own peak RSS)."""
    fifo = tmp_path / "huge.csv"
    os.mkfifo(fifo)
    written: list[int] = []

    def feed() -> None:
        with open(fifo, "wb") as f:
            try:
                f.write(HEADER.encode())
                f.write("700000000101,甲,,,800000000101,card,RES-FLAT,DEMO,1,1\n".encode())
                f.write(b'700000000199,"')  # a quote that never closes on this line, too
                block = b"\x00x" * (1 << 19)  # 1 MiB of NULs and letters, no line end
                for _ in range(200):
                    f.write(block)
                    written.append(len(block))
                f.write(b"\n700000000102,\xe4\xb9\x99,,,800000000102,card,RES-FLAT,DEMO,1,1\n")
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    peak_file = tmp_path / "peak-kb"
    r = import_csv(home, fifo, "--json", exe=[sys.executable, "-c", PEAK_LAUNCHER, str(peak_file)])
    writer.join(timeout=60)
    assert sum(written) == 200 << 20  # the whole line went through the import
    assert r.returncode == 1, r.stderr  # one row was bad
    report = json.loads(r.stdout)
    assert (report["rows"], report["imported"], report["bad"]) == (3, 2, 1)
    assert report["errors"][0]["line"] == 3
    assert "longer than 4096 characters" in report["errors"][0]["message"]
    peak_mb = int(peak_file.read_text()) / 1024
    assert peak_mb < IMPORT_PEAK_RSS_MB, f"peak RSS {peak_mb:.0f} MB"
    r = run(home, "customers", "show", "700000000102", "--json")
    assert json.loads(r.stdout)["name"] == "乙"


def test_import_of_dev_zero_stops_at_once(home: Path) -> None:
    r = import_csv(home, "/dev/zero")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "first line is longer than 4096 characters" in r.stderr


def test_import_needs_an_administrator(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text(HEADER + "700000000301,丙,,,800000000301,card,RES-FLAT,DEMO,1,1\n", "utf-8")
    assert run(home, "customers", "import", str(f)).returncode == 2  # --operator is required
    r = run(
        home,
        "customers",
        "import",
        str(f),
        "--operator",
        "t01",
        env={"CARDVEND_PASSWORD": "demo-t01"},
    )
    assert r.returncode == 1 and "may not import customers" in r.stderr
    assert run(home, "customers", "show", "700000000301").returncode == 1
    r = run(
        home, "customers", "import", str(f), "--operator", "a01", env={"CARDVEND_PASSWORD": "nope"}
    )
    assert r.returncode == 1 and run(home, "customers", "show", "700000000301").returncode == 1
    assert import_csv(home, f).returncode == 0
    r = run(home, "audit", "export", "--out", str(tmp_path / "a.csv"), "--operator", "a01",
            env={"CARDVEND_PASSWORD": "demo-a01"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [line for line in (tmp_path / "a.csv").read_text("utf-8-sig").splitlines()
            if "customers_import" in line and str(f) in line]  # fmt: skip
    assert len(rows) == 1 and ",a01,C01,customers_import,c.csv,ok," in rows[0]
    assert '""imported"":1' in rows[0] and '""bad"":0' in rows[0]
