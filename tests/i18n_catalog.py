"""Extract CardVend's translatable strings and keep the gettext catalogs in step with the code.

A message id is the first positional argument of a call to ``_`` or ``N_`` (also written
``i18n._`` / ``app.i18n.N_``, or imported under another name from ``app.i18n``), when that
argument is a string literal.  Implicitly concatenated literals are a single constant in the
syntax tree, so they arrive here as one message id.

Run from the repository root::

    .venv/bin/python -m tests.i18n_catalog            # report; exit status 1 if out of step
    .venv/bin/python -m tests.i18n_catalog --update   # rewrite both .po files
    .venv/bin/python -m tests.i18n_catalog --update --zh FILE.json   # ... with new translations
    .venv/bin/python -m tests.i18n_catalog --update --from-po OTHER.po  # ... taking those of a
                                                      # catalog from another branch (merges)

``--update`` keeps every existing translation, adds new message ids (empty ``msgstr`` in zh_CN,
to be translated; ``msgstr`` = ``msgid`` in en), drops message ids the code no longer uses and
writes the entries in the order of their first location in the code.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import string
import sys
import unicodedata
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from app.i18n import DOMAIN
from app.i18n import LANGUAGES
from app.i18n import LOCALE_DIR
from app.i18n import parse_po

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("app", "ui", "cardio", "printing", "sync")
SOURCE_FILES = ("main.py",)
SKIP_DIRS = frozenset({"tests", ".venv", "venv", "__pycache__", ".git", "build", "dist"})
MARKERS = frozenset({"_", "N_"})
I18N_MODULE = "app.i18n"
WIDTH = 79

HEADERS: dict[str, dict[str, str]] = {
    "zh_CN": {"title": "Simplified Chinese", "plural": "nplurals=1; plural=0;"},
    "en": {"title": "English", "plural": "nplurals=2; plural=(n != 1);"},
}


class Location(NamedTuple):
    """Where a message id is written: a path relative to the repository root and a line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A call to ``_``/``N_`` whose message cannot be extracted (it is not a string literal)."""

    location: Location
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


# --------------------------------------------------------------------------- extraction


def source_files(paths: Iterable[Path | str] | None = None, root: Path = ROOT) -> list[Path]:
    """The .py files to scan: every file under the given directories plus the given files."""
    if paths is None:
        paths = [root / d for d in SOURCE_DIRS] + [root / f for f in SOURCE_FILES]
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            for f in p.rglob("*.py"):
                if not SKIP_DIRS.intersection(f.relative_to(p).parts[:-1]):
                    found.add(f)
        elif p.suffix == ".py" and p.is_file():
            found.add(p)
    return sorted(found, key=lambda f: _relative(f, root))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _literal(node: ast.expr) -> str | None:
    """The value of a string literal (also ``"a" "b"`` and ``"a" + "b"``), else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left), _literal(node.right)
        if left is not None and right is not None:
            return left + right
    return None


class _Collector(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.markers: set[str] = set(MARKERS)
        self.modules: set[str] = {"i18n", I18N_MODULE}
        self.found: list[tuple[str, Location]] = []
        self.problems: list[Problem] = []

    def visit_Module(self, node: ast.Module) -> None:
        # Aliases first, wherever the import sits (imports inside functions are common here).
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub.module == I18N_MODULE:
                for alias in sub.names:
                    if alias.name in MARKERS:
                        self.markers.add(alias.asname or alias.name)
            elif isinstance(sub, ast.ImportFrom) and sub.module == "app":
                for alias in sub.names:
                    if alias.name == "i18n":
                        self.modules.add(alias.asname or alias.name)
            elif isinstance(sub, ast.Import):
                for alias in sub.names:
                    if alias.name == I18N_MODULE and alias.asname:
                        self.modules.add(alias.asname)
        self.generic_visit(node)

    def _is_marker(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in self.markers
        if isinstance(func, ast.Attribute) and func.attr in MARKERS:
            return _dotted(func.value) in self.modules
        return False

    def visit_Call(self, node: ast.Call) -> None:
        if self._is_marker(node.func):
            where = Location(self.path, node.lineno)
            if not node.args or isinstance(node.args[0], ast.Starred):
                self.problems.append(Problem(where, "no positional message argument"))
            else:
                arg = node.args[0]
                value = _literal(arg)
                if value is None:
                    kind = "an f-string" if isinstance(arg, ast.JoinedStr) else "not a literal"
                    self.problems.append(Problem(where, f"the message is {kind}"))
                elif not value:
                    self.problems.append(Problem(where, "the message is empty"))
                else:
                    self.found.append((value, Location(self.path, arg.lineno)))
        self.generic_visit(node)


def scan(
    paths: Iterable[Path | str] | None = None, root: Path = ROOT
) -> tuple[dict[str, list[Location]], list[Problem]]:
    """Message ids with their locations (sorted), and the calls that could not be extracted."""
    messages: dict[str, list[Location]] = {}
    problems: list[Problem] = []
    for file in source_files(paths, root):
        rel = _relative(file, root)
        # A file that does not parse must stop the update: dropping its messages would
        # throw away their translations.
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=rel)
        collector = _Collector(rel)
        collector.visit(tree)
        for msgid, where in collector.found:
            messages.setdefault(msgid, []).append(where)
        problems.extend(collector.problems)
    for locations in messages.values():
        locations.sort()
    ordered = dict(sorted(messages.items(), key=lambda kv: (kv[1][0], kv[0])))
    return ordered, sorted(problems, key=lambda p: p.location)


def extract(
    paths: Iterable[Path | str] | None = None, root: Path = ROOT
) -> dict[str, list[Location]]:
    """``{msgid: [Location, ...]}`` for every ``_``/``N_`` literal, ordered by first location."""
    return scan(paths, root)[0]


# --------------------------------------------------------------------------- .po writing

_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}
# str.splitlines() (used by parse_po) breaks lines at these, and a .po file has no escape for
# them that gettext and Python read alike.
UNWRITABLE = frozenset("\x85\u2028\u2029")


def escape(text: str) -> str:
    """``text`` as the inside of a double-quoted .po string (readable by gettext and parse_po)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in UNWRITABLE or 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"character U+{code:04X} cannot be written to a .po file: {text!r}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\{code:03o}")
        else:
            out.append(ch)
    return "".join(out)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


_BREAK_AFTER = re.compile(r"(?<=[ ，。；：、！？）])")


def _chunks(text: str, limit: int) -> Iterator[str]:
    """Pieces of ``text`` to write one per line: a line ends after every newline, and long text
    is broken after spaces or Chinese punctuation (never inside a word or an escape)."""
    for segment in re.split(r"(?<=\n)", text):
        if not segment:
            continue
        line = ""
        for token in _BREAK_AFTER.split(segment):
            if line and _width(escape(line + token)) > limit:
                yield line
                line = ""
            line += token
        if line:
            yield line


def po_string(keyword: str, text: str) -> list[str]:
    """``msgid "..."`` (or ``msgstr``), split over several lines when long or multi-line."""
    single = f'{keyword} "{escape(text)}"'
    if _width(single) <= WIDTH and "\n" not in text[:-1]:
        return [single]
    return [f'{keyword} ""'] + [f'"{escape(piece)}"' for piece in _chunks(text, WIDTH - 2)]


def _references(locations: Sequence[Location]) -> list[str]:
    lines: list[str] = []
    line = "#:"
    for where in locations:
        ref = str(where)
        if line != "#:" and len(line) + 1 + len(ref) > WIDTH:
            lines.append(line)
            line = "#:"
        line += " " + ref
    if line != "#:":
        lines.append(line)
    return lines


def placeholders(text: str) -> set[tuple[str, str, str]]:
    """The ``{field!conversion:spec}`` fields of ``text`` as (field, conversion, spec) triples."""
    fields: set[tuple[str, str, str]] = set()
    for _literal_text, field, spec, conversion in string.Formatter().parse(text):
        if field is not None:
            fields.add((field, conversion or "", spec or ""))
            if spec and "{" in spec:
                fields |= placeholders(spec)
    return fields


def _has_placeholders(text: str) -> bool:
    try:
        return bool(placeholders(text))
    except ValueError:
        return False


def header(language: str) -> str:
    info = HEADERS.get(language, {"title": language, "plural": "nplurals=2; plural=(n != 1);"})
    fields = [
        "Project-Id-Version: CardVend",
        f"Language: {language}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        f"Plural-Forms: {info['plural']}",
    ]
    lines = [
        f"# {info['title']} translations of CardVend.",
        "# Generated by `python -m tests.i18n_catalog --update`; edit only the msgstr lines.",
        'msgid ""',
        'msgstr ""',
    ]
    lines += [f'"{escape(field)}\\n"' for field in fields]
    return "\n".join(lines) + "\n"


def render_po(
    language: str,
    messages: Mapping[str, str],
    locations: Mapping[str, Sequence[Location]] | None = None,
) -> str:
    """The text of a .po file with ``messages`` ({msgid: msgstr}) in their given order."""
    blocks = [header(language)]
    for msgid, msgstr in messages.items():
        if not msgid:
            raise ValueError("an empty msgid is reserved for the header")
        lines = _references((locations or {}).get(msgid, ()))
        if _has_placeholders(msgid):
            lines.append("#, python-brace-format")
        lines += po_string("msgid", msgid)
        lines += po_string("msgstr", msgstr)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# --------------------------------------------------------------------------- catalogs


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str) -> dict[str, str]:
    """The translations in a catalog file as it is on disk (empty if there is no file yet)."""
    path = po_path(language)
    return parse_po(path.read_text(encoding="utf-8")) if path.exists() else {}


def catalog_msgids(language: str) -> set[str]:
    """Every msgid in a catalog file, translated or not (parse_po keeps only translated ones)."""
    path = po_path(language)
    if not path.exists():
        return set()
    ids: set[str] = set()
    current: list[str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("msgid "):
            current = [ast.literal_eval(line[6:])]
        elif line.startswith('"') and current is not None:
            current.append(ast.literal_eval(line))
        elif current is not None:
            ids.add("".join(current))
            current = None
    if current is not None:
        ids.add("".join(current))
    ids.discard("")
    return ids


@dataclass
class Status:
    language: str
    added: list[str]
    dropped: list[str]
    untranslated: list[str]


def merged(
    language: str,
    found: Mapping[str, Sequence[Location]],
    extra: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], Status]:
    old = {**(extra or {}), **read_catalog(language)}
    present = catalog_msgids(language)
    new: dict[str, str] = {}
    for msgid in found:
        default = msgid if language == "en" else ""
        new[msgid] = old.get(msgid, default)
    status = Status(
        language,
        added=[m for m in found if m not in present],
        dropped=sorted(m for m in present if m not in found),
        untranslated=[m for m, s in new.items() if not s],
    )
    return new, status


def update(
    found: Mapping[str, Sequence[Location]],
    languages: Sequence[str] = LANGUAGES,
    extra_zh: Mapping[str, str] | None = None,
) -> list[Status]:
    """Rewrite the catalog of every language; returns what changed.  ``extra_zh`` gives
    Chinese translations for message ids the zh_CN catalog does not translate yet."""
    report = []
    for language in languages:
        messages, status = merged(language, found, extra_zh if language == "zh_CN" else None)
        text = render_po(language, messages, found)
        path = po_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            with path.open("w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        report.append(status)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.i18n_catalog",
        description="Check (or with --update, rewrite) the CardVend translation catalogs.",
    )
    parser.add_argument("--update", action="store_true", help="rewrite the .po files")
    parser.add_argument(
        "--zh", type=Path, action="append", default=[], help="JSON {msgid: Chinese} to add"
    )
    parser.add_argument(
        "--from-po",
        type=Path,
        action="append",
        default=[],
        help="a zh_CN .po file (another branch's) whose translations fill the gaps",
    )
    args = parser.parse_args(argv)
    extra: dict[str, str] = {}
    for path in args.from_po:
        extra.update(parse_po(path.read_text(encoding="utf-8")))
    for path in args.zh:
        extra.update(json.loads(path.read_text(encoding="utf-8")))

    found, problems = scan()
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.update:
        statuses = update(found, extra_zh=extra)
    else:
        statuses = [merged(language, found)[1] for language in LANGUAGES]
    print(f"{len(found)} messages")
    out_of_step = False
    for s in statuses:
        print(
            f"{s.language}: {len(s.added)} new, {len(s.dropped)} dropped, "
            f"{len(s.untranslated)} untranslated"
        )
        if s.added or s.dropped or s.untranslated:
            out_of_step = True
        for msgid in s.untranslated:
            print(f"  untranslated: {msgid!r}")
        if not args.update:
            for msgid in s.added:
                print(f"  missing: {msgid!r}")
            for msgid in s.dropped:
                print(f"  stale: {msgid!r}")
    return 1 if out_of_step and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
