"""Card and meter commands: ``cardvend card readers|read|blank|issue|erase|emulate`` and
``cardvend meter insert``."""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import json
import os
import sys
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import is_dataclass
from decimal import Decimal
from decimal import InvalidOperation
from pathlib import Path
from typing import Any
from typing import Protocol

from app.cli import card_args
from app.cli import cli_login
from app.cli import command_group
from app.cli import emit_fields
from app.cli import emit_json
from app.cli import id_arg
from app.cli import open_db
from app.cli import stop_on_signals
from app.cli_sales import approve_here
from app.clock import Clock
from app.context import AppContext
from app.domain import ids
from app.domain.audit import AuditAction
from app.domain.card import CardContents
from app.domain.card import CardKind
from app.domain.card import CorruptCardFile
from app.domain.card import ForeignCard
from app.domain.card import NoReader
from app.domain.card import UnsupportedProfile
from app.domain.card import WrongCardKind
from app.domain.ids import METER_NO
from app.domain.permissions import Action
from app.errors import CardVendError
from app.errors import ValidationError
from app.files import check_output
from app.files import file_problem
from app.files import save_output
from app.i18n import N_
from app.i18n import _
from app.i18n import translate
from app.persistence.db import Database
from app.ports import ApduChannel
from app.ports import KeyRole
from app.services import cards
from app.services.auth import Principal
from app.settings import CARD_READER
from cardio import wiring
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.terminal import ApduTerminal

KIND_NAMES = {
    "user": CardKind.USER,
    "tariff": CardKind.TARIFF,
    "parameters": CardKind.PARAMETERS,
    "reading-day": CardKind.READING_DAY,
    "check": CardKind.CHECK,
}


def _plain(value: Any) -> Any:
    """JSON form of records: enums by name, bytes as hex, times ISO."""
    if isinstance(value, enum.IntFlag):
        return int(value)
    if isinstance(value, enum.Enum):
        return (value.name or str(value.value)).lower()
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def contents_json(c: CardContents) -> dict[str, Any]:
    wb = c.write_back
    return {
        "serial": c.serial_hex,
        "kind": c.kind.name.lower(),
        "profile_version": c.profile_version,
        "customer_no": c.parameters.customer_no if c.parameters else None,
        "meter_no": c.parameters.meter_no if c.parameters else None,
        "purchase_count": c.purchase.purchase_count if c.purchase else 0,
        "purchase_amount_fen": c.purchase.amount if c.purchase else 0,
        "parameters": _plain(c.parameters),
        "purchase": _plain(c.purchase),
        "purchase_genuine": c.purchase_genuine,
        "current_tariff": _plain(c.current_tariff),
        "backup_tariff": _plain(c.backup_tariff),
        "job": _plain(c.job),
        "write_back": None
        if wb is None
        else {
            "meter_no": wb.meter_no,
            "remaining_fen": wb.remaining,
            "overdraft_used_fen": wb.overdraft_used,
            "purchase_count": wb.purchase_count,
            "total_energy_wh": wb.total_energy_wh,
            "status": [(f.name or "").lower() for f in type(wb.status) if f and f in wb.status],
            "status_bits": int(wb.status),
            "illegal_insert_count": wb.illegal_insert_count,
            "time": wb.time.isoformat() if wb.time else None,
            "param_version": wb.param_version,
            "genuine": c.write_back_genuine,
        },
    }


class ImageCard:
    """An emulated card in an image file, used in-process instead of a reader."""

    def __init__(self, path: Path) -> None:
        self.os = UserCardOS(CardImage.load(path), persist_path=path)  # CardImageError
        self.channel = EmulatedChannel(self.os)


def open_channel(ctx: AppContext, args: argparse.Namespace) -> ApduChannel:
    if getattr(args, "image", None):
        return ImageCard(Path(args.image)).channel
    from cardio.pcsc import PcscReaderPort

    port = PcscReaderPort()
    reader = args.reader or ctx.settings.value(CARD_READER)
    if not reader:
        names = port.readers()
        if not names:
            raise NoReader()
        reader = names[0]
    return port.connect(reader)


def _keys_or_none(ctx: AppContext) -> Any:
    try:
        return wiring.key_provider(ctx)
    except Exception:  # reading needs no keys; the write-back is then reported unchecked
        return None


def cmd_readers(ctx: AppContext, args: argparse.Namespace) -> int:
    from cardio.pcsc import PcscReaderPort

    names = PcscReaderPort().readers()
    if args.json:
        json.dump(names, sys.stdout, ensure_ascii=False)
        print()
    else:
        for name in names:
            print(name)
    return 0


def cmd_read(ctx: AppContext, args: argparse.Namespace) -> int:
    channel = open_channel(ctx, args)
    try:
        terminal = ApduTerminal(channel, _keys_or_none(ctx), utility_code=wiring.utility_code(ctx))
        contents = terminal.read()
    finally:
        channel.close()
    data = contents_json(contents)
    if args.json:
        emit_json(data)
        return 0
    print(_("Card {serial}: {kind}", serial=data["serial"], kind=translate(contents.kind.label)))
    for key in ("customer_no", "meter_no", "purchase_count", "purchase_amount_fen"):
        print(f"  {key:22} {data[key]}")
    if data["write_back"]:
        for key, value in data["write_back"].items():
            print(f"  write_back.{key:12} {value}")
    return 0


# --------------------------------------------------------------------------- card administration


def _source(args: argparse.Namespace) -> str:
    """What the command works on, for the audit log: the image file or the reader."""
    image = getattr(args, "image", None)
    return f"image:{Path(image).resolve()}" if image else f"reader:{args.reader or '-'}"


def _administrator(ctx: AppContext, args: argparse.Namespace, action: str) -> Principal | None:
    """Sign in ``--operator`` for a card administration command, with the permission to
    administer cards (technician or admin), or None when no one need sign in.

    On a real reader someone always signs in.  On an emulated card image the same rule holds
    as soon as a database is set up here (training behaves as production); with no database
    (a card lab, the demo before ``cardvend init``) the image commands run as before."""
    return sign_in_operator(
        ctx,
        args,
        cards.authorize,
        action,
        _source(args),
        optional=bool(getattr(args, "image", None)),
        missing=N_(
            "card administration is done by a technician or an administrator: add "
            "--operator ID (password from CARDVEND_PASSWORD or a prompt)"
        ),
    )


class Authorize(Protocol):
    def __call__(
        self, db: Database, actor: Principal, clock: Clock, *, action: str, target: str
    ) -> None: ...


def sign_in_operator(
    ctx: AppContext,
    args: argparse.Namespace,
    authorize: Authorize,
    action: str,
    target: str,
    *,
    optional: bool,
    missing: str,
) -> Principal | None:
    """``--operator`` signs in and ``authorize`` lets them do ``action`` on ``target``. Without
    ``--operator``: None when the command is ``optional`` and no database is set up here (a card
    lab, a bench), else the error ``missing`` (an ``N_`` message)."""
    if not args.operator:
        if optional and not cards.database_in_use(ctx):
            return None
        raise ValidationError(missing)
    actor = cli_login(ctx, args.operator)
    authorize(open_db(ctx), actor, ctx.clock, action=action, target=target)
    return actor


def _audit(
    ctx: AppContext,
    args: argparse.Namespace,
    actor: Principal | None,
    action: AuditAction,
    serial: str,
    detail: Mapping[str, Any] | None = None,
    approval_request: str | None = None,
) -> None:
    """Audit a card administration step ``actor`` did on the card of ``--reader``/``--image``
    (nothing when nobody signed in for it)."""
    if actor is not None:
        cards.record(
            open_db(ctx),
            actor,
            ctx.clock,
            action=action,
            serial=serial,
            detail={**(detail or {}), "source": _source(args)},
            approval_request=approval_request,
        )


def cmd_blank(ctx: AppContext, args: argparse.Namespace) -> int:
    path = check_output(args.image, force=args.force)
    try:
        serial = bytes.fromhex(args.serial) if args.serial else os.urandom(8)
    except ValueError:
        serial = b""
    if len(serial) != 8:
        raise ValidationError(N_("a card serial is 8 bytes (16 hex digits)"))
    actor = _administrator(ctx, args, "card_blank")
    wiring.ensure_demo_keystore(ctx)
    master = wiring.load_master_keys(ctx)
    keys = {int(role): key for role, key in master.diversified_card_keys(serial).items()}
    save_output(path, CardImage.blank(serial, keys).to_bytes(), force=args.force)
    _audit(ctx, args, actor, AuditAction.CARD_BLANK, serial.hex().upper())
    print(_("Blank card {serial} written to {path}", serial=serial.hex().upper(), path=str(path)))
    return 0


def cmd_issue(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = _administrator(ctx, args, "card_issue")
    channel = open_channel(ctx, args)
    try:
        contents = ApduTerminal(channel, wiring.key_provider(ctx)).issue(KIND_NAMES[args.kind])
    finally:
        channel.close()
    _audit(ctx, args, actor, AuditAction.CARD_ISSUE, contents.serial_hex, {"kind": args.kind})
    print(
        _(
            "Card {serial} issued as a {kind}",
            serial=contents.serial_hex,
            kind=translate(contents.kind.label),
        )
    )
    return 0


def _erase_risk(ctx: AppContext, terminal: ApduTerminal) -> cards.EraseRisk:
    """What erasing the card in ``terminal`` would destroy; a card whose files cannot be read
    counts as holding what its customer's card may hold."""
    try:
        contents = terminal.read()
    except (CorruptCardFile, UnsupportedProfile, WrongCardKind, ForeignCard):
        return cards.erase_risk_unreadable(open_db(ctx), terminal.select_mf().serial.hex().upper())
    return cards.erase_risk(open_db(ctx), contents)


def cmd_erase(ctx: AppContext, args: argparse.Namespace) -> int:
    actor = _administrator(ctx, args, "card_erase")
    channel = open_channel(ctx, args)
    try:
        terminal = ApduTerminal(
            channel, wiring.key_provider(ctx), utility_code=wiring.utility_code(ctx)
        )
        risk = None
        request = None
        if actor is not None:
            risk = _erase_risk(ctx, terminal)
            if risk.needs_approval and cards.erase_needs_rule(open_db(ctx)):
                if not args.approver:
                    raise risk.error()
                request = approve_here(
                    ctx, args, actor, Action.ERASE_CARD, risk.serial, payload=risk.to_json()
                ).id
        contents = terminal.erase()
    finally:
        channel.close()
    if risk is not None:
        _audit(
            ctx, args, actor, AuditAction.CARD_ERASE, contents.serial_hex, risk.to_json(), request
        )
    print(_("Card {serial} erased back to blank", serial=contents.serial_hex))
    return 0


def cmd_emulate(ctx: AppContext, args: argparse.Namespace) -> int:
    from cardio.emulator import CardOS
    from cardio.emulator import PsamOS
    from cardio.vpcd import VpcdCard

    card_os: CardOS
    if args.psam:
        # a security access module holding this installation's master keys
        master = wiring.load_master_keys(ctx)
        keys = {int(role): master.key(role) for role in KeyRole}
        card_os = PsamOS(keys, bytes.fromhex(args.serial or "50534D0000000001"))
        serial = card_os.serial
    else:
        if not args.image:
            raise ValidationError(N_("--image is needed unless --psam is given"))
        card = ImageCard(Path(args.image))
        card_os, serial = card.os, card.os.image.serial
    server = VpcdCard(card_os, slot=args.slot)
    with stop_on_signals("card emulate") as stop:
        server.start()
        print(
            _(
                "Serving card {serial} on vpcd slot {slot}; stop with Ctrl-C",
                serial=serial.hex().upper(),
                slot=args.slot,
            ),
            flush=True,
        )
        stop.wait()
    server.stop()
    return 0


def _exact(text: str, scale: int, what: str) -> int:
    """``"1.5"`` hours × 60 -> 90 minutes, exactly; refuses what is not a whole unit."""
    try:
        value = Decimal(text) * scale
    except InvalidOperation:
        raise ValidationError(
            N_("{what} must be a number, got {value!r}"), what=what, value=text
        ) from None
    if value < 0 or value != value.to_integral_value():
        raise ValidationError(
            N_("{what} must be a non-negative number, got {value!r}"), what=what, value=text
        )
    return int(value)


class MeterStateFileError(CardVendError):
    code = "meter_state"
    template = N_(
        "The meter state {path} cannot be used: {reason}. Give another --meter-state file (a "
        "new one starts a new meter)."
    )


@contextmanager
def _meter_state(path: Path) -> Iterator[None]:
    """Problems with the simulated meter's state file, as one line that names it."""
    from cardio.meter_sim import MeterStateError

    try:
        yield
    except MeterStateError as exc:
        raise MeterStateFileError(
            path=str(path), reason=N_("it is not a meter state ({detail})"), detail=str(exc)
        ) from None
    except UnicodeDecodeError:
        raise MeterStateFileError(
            path=str(path), reason=N_("it is not a meter state (not UTF-8 text)")
        ) from None
    except OSError as exc:
        raise MeterStateFileError(path=str(path), reason=file_problem(exc)) from None


def cmd_meter_insert(ctx: AppContext, args: argparse.Namespace) -> int:
    from cardio.meter_sim import MeterSimulator
    from cardio.meter_sim import MeterStateError

    if args.meter_no is not None:
        METER_NO.check(args.meter_no, "--meter-no")
    minutes = _exact(args.hours, 60, "--hours") if args.hours else None
    load_w = _exact(args.load_kw or "0", 1000, "--load-kw")
    card = ImageCard(Path(args.image))
    keys = wiring.key_provider(ctx)
    state = Path(args.meter_state)
    with _meter_state(state):
        try:
            meter = MeterSimulator(state, keys, meter_no=args.meter_no, clock=ctx.clock)
        except (MeterStateError, UnicodeDecodeError):
            raise
        except ValueError as exc:  # the state file of another meter
            raise MeterStateFileError(
                path=str(state), reason=N_("it is another meter's ({detail})"), detail=str(exc)
            ) from None
        consumed = meter.consume(minutes, load_w) if minutes is not None else None
        terminal = ApduTerminal(card.channel, keys, utility_code=wiring.utility_code(ctx))
        result = meter.insert(terminal)
    out = {
        "accepted": result.accepted,
        "reason": result.reason,
        "credited_fen": result.credited,
        "consumed": _plain(consumed) if consumed is not None else None,
        "write_back": _plain(result.write_back),
    }
    emit_fields(out, as_json=args.json, width=14, none="None")
    return 0


def card_serial(text: str) -> str:
    """``--serial``: 16 hexadecimal digits (ASCII; lower case is taken as upper case)."""
    return id_arg(ids.CARD_SERIAL)(text.upper() if text.isascii() else text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    csub = command_group(sub, "card", _("card readers and cards"))

    q = csub.add_parser("readers", help=_("list the PC/SC readers"))
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_readers)
    q = csub.add_parser("read", help=_("read and decode every file of a card"))
    card_args(q)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_read)

    def administrator(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--operator",
            help=_(
                "technician or administrator who does it (password from CARDVEND_PASSWORD or a "
                "prompt); needed on a reader, and on an image once a database is set up"
            ),
        )

    q = csub.add_parser("blank", help=_("make a blank card image"))
    q.add_argument("--image", required=True)
    q.add_argument(
        "--serial", type=card_serial, help=_("card serial, 16 hex digits (random if left out)")
    )
    q.add_argument("--force", action="store_true", help=_("replace an existing image"))
    administrator(q)
    q.set_defaults(func=cmd_blank)
    q = csub.add_parser("issue", help=_("issue a blank card into a kind"))
    card_args(q)
    q.add_argument("--kind", required=True, choices=sorted(KIND_NAMES))
    administrator(q)
    q.set_defaults(func=cmd_issue)
    q = csub.add_parser("erase", help=_("erase a card back to blank"))
    card_args(q)
    administrator(q)
    q.add_argument(
        "--approver",
        help=_(
            "supervisor who approves erasing a card that holds credit the meter has not loaded "
            "(password from CARDVEND_APPROVER_PASSWORD or a prompt)"
        ),
    )
    q.set_defaults(func=cmd_erase)
    q = csub.add_parser("emulate", help=_("serve an emulated card on a vpcd reader slot"))
    q.add_argument("--slot", type=int, default=0, choices=(0, 1))
    q.add_argument("--image", help=_("the card image to serve"))
    q.add_argument(
        "--psam",
        action="store_true",
        help=_("serve a PSAM holding the keystore's master keys instead"),
    )
    q.add_argument("--serial", type=card_serial, help=_("PSAM serial, 16 hex digits"))
    q.set_defaults(func=cmd_emulate)

    msub = command_group(sub, "meter", _("the simulated meter"))
    q = msub.add_parser("insert", help=_("insert a card into the simulated meter"))
    q.add_argument("--meter-state", required=True)
    q.add_argument("--image", required=True)
    q.add_argument("--meter-no", type=id_arg(ids.METER_NO))
    q.add_argument("--hours", help=_("hours of consumption before the card goes in"))
    q.add_argument("--load-kw", help=_("load in kW during those hours"))
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_meter_insert)

    from cardio import cli_meter  # read, relay, simulate over DL/T 645 (imports this module)

    cli_meter.register(msub)
