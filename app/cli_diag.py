"""Getting help from the command line: ``cardvend selftest`` and ``cardvend diag``
(app/services/diagnostics.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli import answer
from app.cli import json_arg
from app.context import AppContext
from app.errors import CardVendError
from app.files import check_output
from app.i18n import N_
from app.i18n import _
from app.services import diagnostics


def _probe(ctx: AppContext) -> diagnostics.DiagProbe:
    if ctx.diag_probe is None:
        raise CardVendError(N_("The self-test's device checks were not wired in."))
    return ctx.diag_probe


def cmd_selftest(ctx: AppContext, args: argparse.Namespace) -> int:
    checks = diagnostics.selftest(ctx, _probe(ctx))
    answer(args.json, [c.to_json() for c in checks], *(check.line() for check in checks))
    return 1 if any(c.status == diagnostics.FAIL for c in checks) else 0


def cmd_diag(ctx: AppContext, args: argparse.Namespace) -> int:
    out = (
        Path(args.out)
        if args.out
        else Path.cwd() / diagnostics.default_bundle_name(ctx.clock.now(), ctx.counter_id)
    )
    out = check_output(out)
    checks = diagnostics.write_bundle(ctx, _probe(ctx), out)
    failed = sum(c.status == diagnostics.FAIL for c in checks)
    print(
        _(
            "Diagnostics written to {path} (no passwords, keys or tokens in it); the self-test "
            "found {count} problems. Send the file to support.",
            path=out,
            count=failed,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "selftest", help=_("check database, audit chain, keys, reader, printer, central link")
    )
    json_arg(q)
    q.set_defaults(func=cmd_selftest)
    q = sub.add_parser("diag", help=_("write a support bundle (zip) without any secret"))
    q.add_argument("--out", metavar="FILE.zip", help=_("the bundle to write"))
    q.set_defaults(func=cmd_diag)
