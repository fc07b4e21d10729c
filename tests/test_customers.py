"""Customer archive: CSV import with bad rows, and find by number, name prefix, phone suffix."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.clock import FixedClock
from app.errors import ImportFileError, NotFound, ValidationError
from app.persistence.db import Database
from app.services.customers import count_customers, customer_view, find_customers, import_csv

HEADER = "customer_no,name,address,phone,meter_no,meter_kind,tariff_plan,office,ct_ratio,pt_ratio\n"


def write(tmp_path: Path, body: bytes | str, name: str = "c.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return p


def test_import_good_and_bad_rows(demo_db: Database, clock: FixedClock, tmp_path: Path) -> None:
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
    report = import_csv(demo_db, write(tmp_path, body), clock, on_error=seen.append)
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


def test_import_all_or_nothing(demo_db: Database, clock: FixedClock, tmp_path: Path) -> None:
    before = count_customers(demo_db)
    body = (
        HEADER
        + "300000000001,甲,,,400000000001,card,RES-FLAT,DEMO,1,1\n"
        + "3000000000x2,乙,,,400000000002,card,RES-FLAT,DEMO,1,1\n"
    )
    report = import_csv(demo_db, write(tmp_path, body), clock, all_or_nothing=True)
    assert not report.committed and report.imported == 0 and report.bad == 1
    assert count_customers(demo_db) == before
    with pytest.raises(NotFound):
        customer_view(demo_db, "300000000001")


def test_import_bom_and_column_order(demo_db: Database, clock: FixedClock, tmp_path: Path) -> None:
    body = (
        "\ufeffname,customer_no,meter_no,meter_kind,tariff_plan,office,extra\n"
        "孙八,300000000020,400000000020,CARD,RES-TIER,DEMO,ignored\n"
    )
    report = import_csv(demo_db, write(tmp_path, body), clock)
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
    demo_db: Database, clock: FixedClock, tmp_path: Path, body: str | bytes, needle: str
) -> None:
    before = count_customers(demo_db)
    with pytest.raises(ImportFileError, match=needle):
        import_csv(demo_db, write(tmp_path, body), clock)
    assert count_customers(demo_db) == before


def test_missing_file(demo_db: Database, clock: FixedClock, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError):
        import_csv(demo_db, tmp_path / "nope.csv", clock)


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


def test_find_prefix_is_literal(demo_db: Database, clock: FixedClock, tmp_path: Path) -> None:
    body = (
        HEADER
        + "300000000001,50%_off,,,400000000001,card,RES-FLAT,DEMO,1,1\n"
        + "300000000002,50xyoff,,,400000000002,card,RES-FLAT,DEMO,1,1\n"
    )
    import_csv(demo_db, write(tmp_path, body), clock)
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
