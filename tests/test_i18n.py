"""The translation catalogs match the code: every message translated, placeholders intact.

When a test here fails because messages were added or removed, run
``.venv/bin/python -m tests.i18n_catalog --update`` and translate the new zh_CN entries.
"""

from __future__ import annotations

import re
import string
import textwrap
from functools import cache
from pathlib import Path

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from app import i18n
from app.errors import AmountError
from app.errors import CardVendError
from app.errors import SaleInProgress
from app.errors import ValidationError
from app.i18n import LANGUAGES
from app.i18n import N_
from app.i18n import Msg
from app.i18n import normalize_language
from app.i18n import parse_po
from tests.i18n_catalog import UNWRITABLE
from tests.i18n_catalog import Location
from tests.i18n_catalog import catalog_msgids
from tests.i18n_catalog import escape
from tests.i18n_catalog import extract
from tests.i18n_catalog import placeholders
from tests.i18n_catalog import po_path
from tests.i18n_catalog import read_catalog
from tests.i18n_catalog import render_po
from tests.i18n_catalog import scan

HINT = "run `.venv/bin/python -m tests.i18n_catalog --update` and translate the zh_CN entries"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LETTER = re.compile(r"[A-Za-z]")


@cache
def found() -> dict[str, list[Location]]:
    return extract()


def where(msgid: str) -> str:
    return " ".join(str(loc) for loc in found().get(msgid, []))


def literal_text(text: str) -> str:
    """``text`` without its ``{placeholders}``."""
    return "".join(lit for lit, *_rest in string.Formatter().parse(text))


# --------------------------------------------------------------------------- the extractor


def test_the_code_has_messages() -> None:
    messages = found()
    assert len(messages) > 20
    # one from each kind of marking: N_ template, _ in argparse help, i18n._ attribute call
    assert "The amount {value} is not valid: {reason}" in messages
    assert "log to stderr too" in messages
    assert "Unexpected error: {detail}. Details are in the log file." in messages
    assert all(
        not loc.path.startswith(("tests/", ".venv/")) for locs in messages.values() for loc in locs
    )


def test_every_marked_message_is_a_literal() -> None:
    """``_(f"...")`` or ``_(variable)`` can never be in a catalog."""
    _messages, problems = scan()
    assert not problems, "\n".join(map(str, problems))


def test_extract_reads_every_way_of_marking(tmp_path: Path) -> None:
    src = tmp_path / "pkg"
    (src / "sub").mkdir(parents=True)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "junk.py").write_text('_("cached")\n', encoding="utf-8")
    (src / "sub" / "mod.py").write_text(
        textwrap.dedent("""\
        import argparse
        from app import i18n
        from app.i18n import N_, _
        from app.i18n import _ as tr
        import app.i18n as loc


        class E(Exception):
            template = N_(
                "first part, "
                "second part {x}"
            )


        def f(parser: argparse.ArgumentParser, n: int) -> str:
            parser.add_argument("--a", help=_("help text"))
            print(f"{_('inside an f-string')}")
            print(i18n._("via the module", n=n), loc.N_("via an alias"), tr("renamed"))
            print(_("help text"), _(f"bad {n}"), _(n), other._("not ours"))
            return _("a" + "b")
        """),
        encoding="utf-8",
    )
    messages, problems = scan([src], root=tmp_path)
    assert messages == {
        "first part, second part {x}": [Location("pkg/sub/mod.py", 10)],
        "help text": [Location("pkg/sub/mod.py", 16), Location("pkg/sub/mod.py", 19)],
        "inside an f-string": [Location("pkg/sub/mod.py", 17)],
        "via the module": [Location("pkg/sub/mod.py", 18)],
        "via an alias": [Location("pkg/sub/mod.py", 18)],
        "renamed": [Location("pkg/sub/mod.py", 18)],
        "ab": [Location("pkg/sub/mod.py", 20)],
    }
    assert [(p.location.line, p.reason) for p in problems] == [
        (19, "the message is an f-string"),
        (19, "the message is not a literal"),
    ]


# --------------------------------------------------------------------------- the catalogs


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(language: str) -> None:
    translations = read_catalog(language)
    missing = [
        f"{msgid!r} ({where(msgid)})"
        for msgid in found()
        if not translations.get(msgid, "").strip()
    ]
    assert not missing, f"{language}: {len(missing)} untranslated; {HINT}:\n" + "\n".join(missing)


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language: str) -> None:
    translations = read_catalog(language)
    wrong = []
    for msgid in found():
        msgstr = translations.get(msgid)
        if not msgstr:
            continue
        try:
            same = placeholders(msgstr) == placeholders(msgid)
        except ValueError as exc:  # an unbalanced brace
            same, msgstr = False, f"{msgstr} [{exc}]"
        if not same:
            wrong.append(f"{msgid!r} -> {msgstr!r}")
    assert not wrong, f"{language}: placeholders differ:\n" + "\n".join(wrong)


def test_message_ids_use_named_placeholders() -> None:
    """``_()`` and the errors fill placeholders by keyword; ``{}`` or ``{0}`` cannot be filled."""
    wrong = []
    for msgid in found():
        try:
            fields = placeholders(msgid)
        except ValueError as exc:
            wrong.append(f"{msgid!r} ({where(msgid)}): {exc}")
            continue
        for field, _conversion, _spec in fields:
            if not re.split(r"[.\[]", field, maxsplit=1)[0].isidentifier():
                wrong.append(f"{msgid!r} ({where(msgid)}): {{{field}}}")
    assert not wrong, "\n".join(wrong)


def test_chinese_translations_are_chinese() -> None:
    translations = read_catalog("zh_CN")
    english = [
        f"{msgid!r} -> {msgstr!r}"
        for msgid, msgstr in translations.items()
        if msgid in found()
        and LETTER.search(literal_text(msgid))
        and not CJK.search(literal_text(msgstr))
    ]
    assert not english, "zh_CN entries without Chinese:\n" + "\n".join(english)


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_stale_messages(language: str) -> None:
    stale = sorted(catalog_msgids(language) - found().keys())
    assert not stale, f"{language}: no longer in the code; {HINT}:\n" + "\n".join(map(repr, stale))


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_header(language: str) -> None:
    text = po_path(language).read_text(encoding="utf-8")
    assert '"Content-Type: text/plain; charset=UTF-8\\n"' in text
    assert f'"Language: {language}\\n"' in text


# --------------------------------------------------------------------------- writer and parser

po_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=UNWRITABLE)
)


@given(st.dictionaries(po_text.filter(bool), po_text, max_size=8))
@example({'say "hi"': '说 "你好"', "back\\slash \\n": "反\\斜杠 \\n"})
@example({"line one\nline two\n": "第一行\n第二行\n", "\n\n": "\n", "tab\there\r": "制表\t"})
@example({'msgid "x"\nmsgstr "y"': "#: not a comment", '"': '"', "\\": "\\"})
@example({"\x00\x01\x0b\x0c\x1c\x1f\x7f": "\a\b\x1e", "é 中 € \U0001f600": "\ufeff"})
@example({"word " * 40: "很长的句子，" * 40, "x" * 200: "y" * 200})
def test_parse_po_reads_what_the_writer_writes(messages: dict[str, str]) -> None:
    text = render_po("zh_CN", messages, {m: [Location("app/x.py", 1)] for m in messages})
    assert parse_po(text) == {msgid: msgstr for msgid, msgstr in messages.items() if msgstr}


def test_written_catalog_survives_a_file(tmp_path: Path) -> None:
    messages = {'a "quoted"\\ line\n': '带 "引号"\\ 的行\n', "cr\r\nlf": "回车\r\n换行"}
    path = tmp_path / "cardvend.po"
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(render_po("en", messages))
    assert parse_po(path.read_text(encoding="utf-8")) == messages


def test_writer_refuses_what_a_po_file_cannot_hold() -> None:
    for ch in sorted(UNWRITABLE):
        with pytest.raises(ValueError):
            escape(f"a{ch}b")
    with pytest.raises(ValueError):
        render_po("en", {"": "header"})


# --------------------------------------------------------------------------- errors in Chinese


def chinese(err: CardVendError) -> str:
    text = err.localized("zh_CN")
    assert CJK.search(text), text
    catalog = read_catalog("zh_CN")
    params = {k: catalog.get(v, v) if isinstance(v, str) else v for k, v in err.params.items()}
    assert text == catalog[err.message_template].format(**params)
    return text


def test_sale_in_progress_in_chinese() -> None:
    err = SaleInProgress(customer_no="100000000001", sale_id="x", purchase_count=3)
    text = chinese(err)
    assert "100000000001" in text and " x" in text and "3" in text
    assert "{" not in text
    assert "unfinished sale" in str(err)  # str() stays English, for the logs


def test_amount_error_in_chinese() -> None:
    from app.money import parse_yuan

    with pytest.raises(AmountError) as info:
        parse_yuan("-1")
    text = chinese(info.value)
    assert "-1" in text
    assert info.value.localized("en").startswith("The amount -1 is not valid")


def test_validation_error_with_a_conversion_in_chinese() -> None:
    from app.domain.customers import check_customer_no

    with pytest.raises(ValidationError) as info:
        check_customer_no("12345")
    text = chinese(info.value)
    assert "customer_no" in text and "'12345'" in text


def test_localized_follows_the_current_language() -> None:
    err = SaleInProgress(customer_no="100000000001", sale_id="x", purchase_count=3)
    i18n.set_language("zh_CN")
    assert err.localized() == err.localized("zh_CN") != err.localized("en")


def test_marked_parameters_are_translated_too() -> None:
    from app.errors import NotFound
    from app.money import parse_yuan

    with pytest.raises(AmountError) as info:
        parse_yuan("-1")
    text = info.value.localized("zh_CN")
    assert "it must not be negative" not in text and "-1" in text
    assert "Customer" not in NotFound(what=N_("Customer"), key="100000000001").localized("zh_CN")


def test_an_error_inside_an_error_reads_in_the_same_language() -> None:
    """An error given as another's parameter (the card's fault inside "the sale is in doubt", the
    failure inside a conflict) is rendered in the language asked for: English in the log, the
    teller's language on the screen."""
    from app.errors import Conflict
    from app.money import parse_yuan

    with pytest.raises(AmountError) as info:
        parse_yuan("-1")
    inner = info.value
    outer = Conflict(detail=inner)
    assert outer.localized("zh_CN") == inner.localized("zh_CN") != inner.localized("en")
    assert str(outer) == inner.localized("en") == outer.localized("en")


def test_plain_text_parameters_are_never_translated() -> None:
    """Only a marked message (a :class:`~app.i18n.Msg`, as ``N_()`` gives) is translated as a
    parameter: a name someone chose that happens to equal a message id stays as it is."""
    from app.errors import Conflict
    from app.errors import NotFound

    assert "Customer 1" in NotFound(what="Customer", key="1").localized("zh_CN")
    err = NotFound(what=N_("Task"), key="nothing")
    assert "nothing" in err.localized("zh_CN") and "无" not in err.localized("zh_CN")
    assert Conflict(detail="nothing").localized("zh_CN") == "nothing"
    assert Conflict(detail=Msg("nothing")).localized("zh_CN") == "无"
    # plain text with braces is not a template either
    assert Conflict(detail="{detail} {x}", x=1).localized("zh_CN") == "{detail} {x}"
    assert isinstance(N_("Customer"), Msg) and N_("Customer") == "Customer"


# --------------------------------------------------------------------------- language names


@pytest.mark.parametrize(
    ("value", "language"),
    [
        ("zh_CN.UTF-8", "zh_CN"),
        ("zh_CN", "zh_CN"),
        ("zh", "zh_CN"),
        ("zh-CN", "zh_CN"),
        ("en_US.UTF-8", "en"),
        ("en", "en"),
        ("English", "en"),
        ("C", "en"),
        ("C.UTF-8", "en"),
        ("POSIX", "en"),
        (None, "zh_CN"),
        ("", "zh_CN"),
        ("fr_FR.UTF-8", "zh_CN"),
    ],
)
def test_normalize_language(value: str | None, language: str) -> None:
    assert normalize_language(value) == language
