"""Money parsing and the settings registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.ledger import purchase_limits
from app.domain.ledger import split_payment
from app.errors import AmountError
from app.errors import ValidationError
from app.money import MAX_FEN
from app.money import check_fen
from app.money import format_yuan
from app.money import parse_yuan
from app.settings import SCHEMA_VERSION
from app.settings import Settings


@pytest.mark.parametrize(
    "text, fen",
    [
        ("12.34", 1234),
        ("12.3", 1230),
        ("12", 1200),
        ("0.01", 1),
        (" 7.00 ", 700),
        ("21474836.47", MAX_FEN),
        ("１２．５", 1250),
    ],
)
def test_parse_yuan(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1.234",
        "-1",
        "0",
        "0.00",
        "21474836.48",
        "1e3",
        "1,000",
        "NaN",
        "١٢",
        "99999999999999",
    ],
)
def test_parse_yuan_refuses(text: str) -> None:
    with pytest.raises(AmountError):
        parse_yuan(text)


def test_zero_and_negative_where_allowed() -> None:
    assert parse_yuan("0", allow_zero=True) == 0
    assert parse_yuan("-5.5", allow_negative=True) == -550
    with pytest.raises(AmountError):
        check_fen(True)  # a bool is not an amount
    with pytest.raises(AmountError):
        check_fen(1.5)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=MAX_FEN))
def test_format_parse_round_trip(fen: int) -> None:
    assert parse_yuan(format_yuan(fen)) == fen


@given(
    arrears=st.integers(0, 10**6),
    fees=st.integers(0, 10**5),
    ceiling=st.integers(0, 10**8),
    balance=st.integers(-(10**6), 10**8),
    amount=st.integers(1, MAX_FEN),
)
def test_split_never_loses_a_fen(
    arrears: int, fees: int, ceiling: int, balance: int, amount: int
) -> None:
    limits = purchase_limits(
        arrears_due=arrears, fees_due=fees, credit_ceiling=ceiling, meter_balance=balance
    )
    if limits.minimum <= amount <= limits.maximum:
        s = split_payment(amount, limits)
        assert s.arrears + s.fees + s.credit == amount and s.credit >= 1  # never a 0.00 sale
        assert balance + s.credit <= max(ceiling, balance)
    else:
        with pytest.raises(AmountError):
            split_payment(amount, limits)


def test_a_sale_loads_credit_and_the_maximum_binds_only_under_a_ceiling() -> None:
    """A sale of exactly the dues would write a purchase of 0.00 credit that then blocks the
    customer's next sale until the card has been in the meter: it is refused."""
    from app.domain.ledger import NO_CREDIT_CEILING

    limits = purchase_limits(
        arrears_due=3000, fees_due=500, credit_ceiling=NO_CREDIT_CEILING, meter_balance=0
    )
    assert limits.minimum == 3501 and not limits.ceiling_set and not limits.at_ceiling
    with pytest.raises(AmountError, match="load some credit"):
        split_payment(3500, limits)
    assert split_payment(3501, limits).credit == 1
    full = purchase_limits(arrears_due=0, fees_due=0, credit_ceiling=50000, meter_balance=50000)
    assert full.ceiling_set and full.at_ceiling
    with pytest.raises(AmountError, match="most credit"):
        split_payment(100, full)


def test_settings_defaults_save_load(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    s = Settings.load(path)
    assert s.get("counter_id") == "C01" and not s.is_configured()
    s.set("counter_id", "C07")
    s.set("language", "en")
    s.save(path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["counter_id"] == "C07"
    again = Settings.load(path)
    assert again.get("counter_id") == "C07" and again.is_configured()


def test_settings_upgrade_and_bad_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"database": "sqlite:///x.db", "nonsense": 1}))
    s = Settings.load(path)
    assert s.get("db_url") == "sqlite:///x.db"
    monkeypatch.setenv("CARDVEND_DB", "postgresql://h/db")
    assert s.get("db_url") == "postgresql://h/db"
    with pytest.raises(ValidationError):
        s.set("counter_id", 5)
    with pytest.raises(ValidationError):
        s.set("language", "fr")
    with pytest.raises(ValidationError):
        s.set("no_such", 1)
    path.write_text("{broken")
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings.load(path)
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ValidationError, match="newer"):
        Settings.load(path)


def test_training_mode_is_never_written_to_the_settings_file(tmp_path: Path) -> None:
    from app.settings import TRAINING_MODE

    path = tmp_path / "settings.json"
    settings = Settings(path=path)
    settings.set(TRAINING_MODE.key, True)
    settings.set("counter_id", "C09")
    settings.save()
    again = Settings.load(path)
    assert again.get("counter_id") == "C09" and again.get(TRAINING_MODE.key) is False
    assert "training_mode" not in path.read_text()


ID_SETTINGS = [
    ("counter_id", "C01\n"),  # $ matched before a trailing newline
    ("counter_id", "Ｃ０１"),  # full-width, from an input method
    ("office_code", "DEMO\n"),
    ("office_code", "ＤＥＭＯ"),
    ("utility_code", "１０００01"),
    ("utility_code", "١٠٠٠٠١"),  # Arabic-Indic digits
    ("utility_code", "10000²"),  # a superscript
    ("utility_code", "100001\n"),
]


@pytest.mark.parametrize("key, value", ID_SETTINGS)
def test_id_settings_are_ascii_and_whole(tmp_path: Path, key: str, value: str) -> None:
    """Set, saved and loaded, these were taken as they were: a counter id that displays as C01
    and is not C01, a utility code that no card carries."""
    from app.services.configuration import check_setting

    with pytest.raises(ValidationError, match=f"setting {key} .* is not valid"):
        Settings().set(key, value)
    with pytest.raises(ValidationError, match="is not valid"):
        check_setting(key, value)  # the administration page's way
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, key: value}), encoding="utf-8")
    with pytest.raises(ValidationError, match=f"setting {key} .* is not valid"):
        Settings.load(path)


def test_good_id_settings_load() -> None:
    s = Settings({"counter_id": "C-02.b", "office_code": "HZ_01", "utility_code": "330100"})
    assert (s.get("counter_id"), s.get("office_code"), s.get("utility_code")) == (
        "C-02.b",
        "HZ_01",
        "330100",
    )


def test_typed_accessor_gives_the_configvar_type() -> None:
    from app.settings import LOCKOUT_ATTEMPTS
    from app.settings import TIME_ZONE
    from app.settings import Settings

    settings = Settings()
    assert settings.value(LOCKOUT_ATTEMPTS) == 5 and isinstance(
        settings.value(LOCKOUT_ATTEMPTS), int
    )
    settings.set(LOCKOUT_ATTEMPTS.key, 3)
    assert LOCKOUT_ATTEMPTS.value(settings) == 3
    assert settings.value(TIME_ZONE) == settings.get(TIME_ZONE.key)
