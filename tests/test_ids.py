"""The one set of id formats: ASCII only, matched whole."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain import ids
from app.errors import ValidationError


@pytest.mark.parametrize(
    "value",
    [
        "３０００００００００３２",  # full-width digits
        "٣٠٠٠٠٠٠٠٠٠٣٢",  # Arabic-Indic digits
        "300000000032\n",  # $ would match before this newline
        "30000000003",
        "3000000000321",
        " 300000000032",
        "30000000003²",
        "",
    ],
)
def test_customer_no_refuses_what_only_looks_like_twelve_digits(value: str) -> None:
    assert not ids.CUSTOMER_NO.matches(value)
    with pytest.raises(ValidationError) as err:
        ids.check_customer_no(value)
    assert repr(value) in str(err.value)


def test_valid_ids_pass_unchanged() -> None:
    assert ids.check_customer_no("300000000032") == "300000000032"
    assert ids.check_operator_id("t01") == "t01"
    assert ids.check_counter_id("C01") == "C01"
    assert ids.check_office_code("DEMO") == "DEMO"
    assert ids.CARD_SERIAL.matches("00000000000000AF")
    assert ids.UUID.matches("5d1c1f0e-8c7a-4f4e-9a53-c0a7d0e1e001")


@pytest.mark.parametrize("value", ["t01\n", "t\u00e901", "t01 ", "ｔ01", "t", None, 7])
def test_operator_id_is_ascii_and_whole(value: object) -> None:
    assert not ids.OPERATOR_ID.matches(value)


@given(st.text(min_size=12, max_size=12))
def test_only_ascii_digits_make_a_customer_no(text: str) -> None:
    assert ids.CUSTOMER_NO.matches(text) == all(ch in "0123456789" for ch in text)


@given(st.text())
def test_is_digits_is_ascii(text: str) -> None:
    assert ids.is_digits(text) == (bool(text) and all(ch in "0123456789" for ch in text))


def test_patterns_agree_with_pydantic() -> None:
    """The contract models take the same strings: pydantic must refuse what the check refuses."""
    from typing import Annotated

    from pydantic import BaseModel
    from pydantic import Field
    from pydantic import ValidationError as PydanticError

    class M(BaseModel):
        no: Annotated[str, Field(pattern=ids.CUSTOMER_NO.pattern)]

    assert M(no="300000000032").no == "300000000032"
    for bad in ("300000000032\n", "３０００００００００３２"):
        with pytest.raises(PydanticError):
            M(no=bad)
