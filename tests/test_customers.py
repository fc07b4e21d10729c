"""Customer archive: CSV import with bad rows, and find by number, name prefix, phone suffix."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import select

from app.clock import FixedClock
from app.domain import ids
from app.domain.permissions import PermissionDenied
from app.errors import ImportFileError
from app.errors import NotFound
from app.errors import ValidationError
from app.persistence.db import Database
from app.persistence.models import AuditEntry
from app.persistence.models import Customer
from app.services import audit as audit_service
from app.services import auth
from app.services.customers import MAX_ROW_CHARS
from app.services.customers import count_customers
from app.services.customers import customer_view
from app.services.customers import find_customers
from app.services.customers import import_csv
from app.services.customers import search_customers

HEADER = "customer_no,name,address,phone,meter_no,meter_kind,tariff_plan,office,ct_ratio,pt_ratio\n"


@pytest.fixture
def admin(demo_db: Database, clock: FixedClock) -> auth.Principal:
    return auth.login(demo_db, "a01", "demo-a01", counter_id="C01", clock=clock)


def write(tmp_path: Path, body: bytes | str, name: str = "c.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return p


def test_import_good_and_bad_rows(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    before = count_customers(demo_db)
    body = (
        (
            HEADER
            + '300000000001,张三,"幸福路1号,2单元",13800138000,400000000001,card,RES-FLAT,DEMO,1,1\n'
            + '300000000012,换行,"a\nb",,400000000012,card,RES-FLAT,DEMO,1,1\n'  # lines 3-4
            + "30000000002,李四,,,400000000002,card,RES-FLAT,DEMO,1,1\n"  # 11 digits (line 5)
            + "300000000003,王五,,,400000000003,card,NO-SUCH,DEMO,1,1\n"  # unknown tariff
            + "300000000001,重复,,,400000000004,card,RES-FLAT,DEMO,1,1\n"  # duplicate in file
            + "100000000001,已有,,,400000000005,card,RES-FLAT,DEMO,1,1\n"  # exists already
            + "300000000006,表号重,,,200000000001,card,RES-FLAT,DEMO,1,1\n"  # meter_no taken
            + "300000000007,少列,,,400000000007,card,RES-FLAT,DEMO\n"  # missing fields
            + "300000000008,负变比,,,400000000008,card,RES-FLAT,DEMO,-5,1\n"
            + "300000000009,坏类型,,,400000000009,gas,RES-FLAT,DEMO,1,1\n"
            + "300000000010,赵六,,0571-8888 1234,400000000010,remote,RES-TOU,NEWOFF,50,1\n"
        ).encode()
        + b"300000000011,"
        + "钱七".encode("gbk")
        + (b",,,400000000011,card,RES-FLAT,DEMO,1,1\n")
    )
    seen = []
    report = import_csv(demo_db, write(tmp_path, body), clock, actor=admin, on_error=seen.append)
    assert report.committed
    assert (report.rows, report.imported, report.bad) == (12, 2, 10)
    lines = {e.line: e.message for e in report.errors}
    assert lines.keys() == {3, 5, 6, 7, 8, 9, 10, 11, 12, 14}
    assert "control characters" in lines[3]
    assert "12 digits" in lines[5]
    assert "NO-SUCH" in lines[6] and "unknown" in lines[6]
    assert "twice" in lines[7] and "line 2" in lines[7]
    assert "already exists" in lines[8]
    assert "meter_no 200000000001 already belongs to customer 100000000001" in lines[9]
    assert "fields" in lines[10]
    assert "ct_ratio" in lines[11]
    assert "meter_kind" in lines[12]
    assert "UTF-8" in lines[14]
    assert len(seen) == 10
    assert report.offices_created == ["NEWOFF"]
    assert count_customers(demo_db) == before + 2
    c = customer_view(demo_db, "300000000001")
    assert c.address == "幸福路1号,2单元" and c.phone == "13800138000"
    assert customer_view(demo_db, "300000000010").ct_ratio == 50


def test_import_all_or_nothing(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    before = count_customers(demo_db)
    body = (
        HEADER
        + "300000000001,甲,,,400000000001,card,RES-FLAT,DEMO,1,1\n"
        + "3000000000x2,乙,,,400000000002,card,RES-FLAT,DEMO,1,1\n"
    )
    report = import_csv(demo_db, write(tmp_path, body), clock, actor=admin, all_or_nothing=True)
    assert not report.committed and report.imported == 0 and report.bad == 1
    assert count_customers(demo_db) == before
    with pytest.raises(NotFound):
        customer_view(demo_db, "300000000001")


def test_import_bom_and_column_order(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    body = (
        "\ufeffname,customer_no,meter_no,meter_kind,tariff_plan,office,extra\n"
        "孙八,300000000020,400000000020,CARD,RES-TIER,DEMO,ignored\n"
    )
    report = import_csv(demo_db, write(tmp_path, body), clock, actor=admin)
    assert (report.imported, report.bad) == (1, 0)
    assert customer_view(demo_db, "300000000020").tariff_plan == "RES-TIER"


@pytest.mark.parametrize(
    "body, needle",
    [
        ("", "empty"),
        ("customer_no,name\n300000000001,x\n", "missing columns: meter_no"),
        (b"\xff\xfe" + "客户".encode("utf-16-le") + b"\n", "not UTF-8"),
        (HEADER + '300000000001,"unterminated\n', "unexpected end"),
    ],
)
def test_unreadable_files_import_nothing(
    demo_db: Database,
    clock: FixedClock,
    tmp_path: Path,
    admin: auth.Principal,
    body: str | bytes,
    needle: str,
) -> None:
    before = count_customers(demo_db)
    with pytest.raises(ImportFileError, match=needle):
        import_csv(demo_db, write(tmp_path, body), clock, actor=admin)
    assert count_customers(demo_db) == before


def test_missing_file(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    with pytest.raises(ImportFileError):
        import_csv(demo_db, tmp_path / "nope.csv", clock, actor=admin)


def test_find_by_numbers_name_and_phone(demo_db: Database) -> None:
    by_no = find_customers(demo_db, "100000000007")
    by_meter = find_customers(demo_db, "200000000007")
    assert [c.customer_no for c in by_no] == [c.customer_no for c in by_meter] == ["100000000007"]
    wang = find_customers(demo_db, "王", limit=1000)
    assert wang and all(c.name.startswith("王") for c in wang)
    assert len(wang) == 50  # every 20th demo customer
    phone = by_no[0].phone
    hits = find_customers(demo_db, phone[-6:])
    assert by_no[0].customer_no in [c.customer_no for c in hits]
    assert all(c.phone.endswith(phone[-6:]) for c in hits)
    assert find_customers(demo_db, "999999999999") == []
    assert find_customers(demo_db, "不存在") == []


def test_find_prefix_is_literal(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    body = (
        HEADER
        + "300000000001,50%_off,,,400000000001,card,RES-FLAT,DEMO,1,1\n"
        + "300000000002,50xyoff,,,400000000002,card,RES-FLAT,DEMO,1,1\n"
    )
    import_csv(demo_db, write(tmp_path, body), clock, actor=admin)
    assert [c.name for c in find_customers(demo_db, "50%_")] == ["50%_off"]
    assert len(find_customers(demo_db, "50")) == 2


def test_find_without_index_gives_same_answer(demo_db: Database) -> None:
    if demo_db.dialect != "sqlite":
        pytest.skip("the unindexed comparison is a SQLite benchmark aid")
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(demo_db.engine, "before_cursor_execute", record)
    try:
        for text in ("100000000007", "王", "张", "0000"):
            fast = find_customers(demo_db, text, limit=1000)
            statements.clear()
            slow = find_customers(demo_db, text, limit=1000, use_index=False)
            assert [c.customer_no for c in fast] == [c.customer_no for c in slow]
            assert any("customers NOT INDEXED" in s for s in statements), statements
    finally:
        event.remove(demo_db.engine, "before_cursor_execute", record)


@pytest.mark.parametrize("text", ["", "   "])
def test_find_needs_text(demo_db: Database, text: str) -> None:
    with pytest.raises(ValidationError):
        find_customers(demo_db, text)


# --------------------------------------------------------------------------- strict numbers


def test_import_takes_only_ascii_numbers(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    """``３０００…`` imported as a customer that ``customers show 300000000032`` could not find;
    a superscript ratio stopped the whole import with a ValueError."""
    body = HEADER + (
        "３０００００００００３２,全角,,,400000000032,card,RES-FLAT,DEMO,1,1\n"  # line 2
        "٣٠٠٠٠٠٠٠٠٠٣٣,阿拉伯,,,400000000033,card,RES-FLAT,DEMO,1,1\n"
        "300000000034,表号全角,,,４０００００００００３４,card,RES-FLAT,DEMO,1,1\n"
        "300000000035,上标变比,,,400000000035,card,RES-FLAT,DEMO,1²,1\n"
        "300000000036,全角变比,,,400000000036,card,RES-FLAT,DEMO,５０,1\n"
        "300000000037,全角营业厅,,,400000000037,card,RES-FLAT,ＮＥＷ,1,1\n"
        "30000000003²,上标,,,400000000039,card,RES-FLAT,DEMO,1,1\n"
        "300000000032,半角,,,400000000038,card,RES-FLAT,DEMO,1,1\n"  # line 9: the good one
    )
    report = import_csv(demo_db, write(tmp_path, body), clock, actor=admin)
    assert (report.rows, report.imported, report.bad) == (8, 1, 7)
    lines = {e.line: e.message for e in report.errors}
    assert set(lines) == {2, 3, 4, 5, 6, 7, 8}
    assert "'３０００００００００３２'" in lines[2] and "12 digits 0-9" in lines[2]
    assert "customer_no" in lines[3] and "meter_no" in lines[4]
    assert "ct_ratio" in lines[5] and "ct_ratio" in lines[6]
    assert "ＮＥＷ" in lines[7]
    assert customer_view(demo_db, "300000000032").name == "半角"
    with demo_db.read() as session:
        numbers = session.execute(select(Customer.customer_no, Customer.meter_no)).all()
    assert all(ids.CUSTOMER_NO.matches(c) and ids.METER_NO.matches(m) for c, m in numbers)


@pytest.mark.parametrize(
    "text", ["１０００００００００４２", "١٠٠٠٠٠٠٠٠٠٤٢", "100000000042²", "４２４２"]
)
def test_find_refuses_numbers_in_other_digits(demo_db: Database, text: str) -> None:
    """They found nothing (or a customer imported with them) and said only "no customer"."""
    for find in (find_customers, search_customers):
        with pytest.raises(ValidationError, match="0-9"):
            find(demo_db, text)  # type: ignore[operator]
    assert [c.customer_no for c in find_customers(demo_db, "100000000042")] == ["100000000042"]
    assert find_customers(demo_db, "人民路１２号") == []  # free text may hold any digits


# --------------------------------------------------------------------------- bounded rows


def test_long_rows_are_bad_rows_and_reading_goes_on(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    head = HEADER.rstrip("\n") + ",note\n"

    def row(n: int, note_len: int, end: str = "\n") -> str:
        text = f"3000000001{n:02d},名{n},,,4000000001{n:02d},card,RES-FLAT,DEMO,1,1,"
        return text + "x" * (note_len - len(text)) + end

    assert len(row(1, MAX_ROW_CHARS, "")) == MAX_ROW_CHARS
    quoted = (
        '300000000120,"'
        + "y" * 3000
        + "\n"
        + "y" * 3000
        + '",,,400000000120,card,RES-FLAT,DEMO,1,1,\n'
    )
    body = (
        head
        + row(2, MAX_ROW_CHARS, "\r\n")  # line 2: exactly the limit
        + row(3, MAX_ROW_CHARS + 1)  # 3: one character too many
        + row(4, MAX_ROW_CHARS)  # 4
        + row(5, MAX_ROW_CHARS + 1, "\r\n")  # 5: its CR is the last character of a read
        + row(6, MAX_ROW_CHARS + 1, "\r")  # 6: a lone CR there, and the next line right after
        + row(7, 60)  # 7
        + row(8, 10_000_000)  # 8: ten million characters on one line
        + "300000000109,\x00\x00\x00,,,400000000109,card,RES-FLAT,DEMO,1,1,\n"  # 9: NULs
        + quoted  # 10-11: a quoted field over two lines, too long together
        + row(12, 50, "")  # 12: the last line has no line end
    )
    report = import_csv(demo_db, write(tmp_path, body), clock, actor=admin)
    lines = {e.line: e.message for e in report.errors}
    assert set(lines) == {3, 5, 6, 8, 9, 10}, lines
    assert all(f"longer than {MAX_ROW_CHARS} characters" in lines[n] for n in (3, 5, 6, 8, 10))
    assert "control characters" in lines[9]
    assert (report.rows, report.imported, report.bad) == (10, 4, 6)
    for n in (2, 4, 7, 12):
        assert customer_view(demo_db, f"3000000001{n:02d}").name == f"名{n}"


def test_a_file_whose_first_line_never_ends_is_refused_at_once(
    demo_db: Database, clock: FixedClock, admin: auth.Principal
) -> None:
    """``/dev/zero`` has no line end: the import read it into memory until 4 GB."""
    with pytest.raises(ImportFileError, match=f"longer than {MAX_ROW_CHARS} characters"):
        import_csv(demo_db, Path("/dev/zero"), clock, actor=admin)
    with demo_db.read() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None and (entry.action, entry.result) == ("customers_import", "failed")


@pytest.mark.parametrize("after_header", [False, True])
def test_binary_files_are_bad_rows_or_refused(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal, after_header: bool
) -> None:
    noise = random.Random(12).randbytes(2_000_000)
    path = write(tmp_path, (HEADER.encode() if after_header else b"") + noise)
    before = count_customers(demo_db)
    try:
        report = import_csv(demo_db, path, clock, actor=admin)
    except ImportFileError:
        pass  # the file cannot be read as CSV (a quote that never closes, no header)
    else:
        assert report.imported == 0 and report.bad == report.rows > 0
    assert count_customers(demo_db) == before


# --------------------------------------------------------------------------- set-up by an admin


def test_import_is_an_audited_admin_action(
    demo_db: Database, clock: FixedClock, tmp_path: Path, admin: auth.Principal
) -> None:
    body = (
        HEADER
        + "300000000051,甲,,,400000000051,card,RES-FLAT,DEMO,1,1\n"
        + "30000000005x,乙,,,400000000052,card,RES-FLAT,DEMO,1,1\n"
    )
    path = write(tmp_path, body, "archive.csv")
    teller = auth.login(demo_db, "t01", "demo-t01", counter_id="C01", clock=clock)
    with pytest.raises(PermissionDenied):
        import_csv(demo_db, path, clock, actor=teller)
    assert count_customers(demo_db) == 1000

    def entries() -> list[AuditEntry]:
        with demo_db.read() as session:
            return list(
                session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.action == "customers_import")
                    .order_by(AuditEntry.seq)
                )
            )

    assert entries() == []  # a refused permission changes nothing
    import_csv(demo_db, path, clock, actor=admin)
    import_csv(demo_db, path, clock, actor=admin, all_or_nothing=True)
    first, second = entries()
    assert (first.operator_id, first.target, first.result) == ("a01", "archive.csv", "ok")
    assert json.loads(first.detail) == {
        "file": str(path),
        "rows": 2,
        "imported": 1,
        "bad": 1,
        "committed": True,
    }
    assert (second.result, json.loads(second.detail)["committed"]) == ("failed", False)
    assert audit_service.verify(demo_db).ok
