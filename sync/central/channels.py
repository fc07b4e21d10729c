"""Payment channels (seed 3.2): a bank, a mobile app or an agent takes payments for the station's
remote fee-control customers, and the station reconciles with each channel day by day.

- **Credentials.** A channel has an id (``BANK1``), a name and a bearer token, shown once when
  the administrator adds the channel (``cardvend central channels add``); only its SHA-256 is
  kept.  A revoked channel's token opens nothing.
- **Whom it serves.** The offices it is added for (``--office``, repeatable) or every office
  (``--all-offices``).  A customer of another office and an unknown number are the same
  refusal, ``customer_not_allowed`` (403): a channel learns nothing about other offices.
- **What it may pay.** Remote fee-control customers only, not closed (a paused account may be
  paid): a card customer's credit must be written onto the card at a counter (``not_remote``,
  409), so a channel cannot take it; a closed account is ``customer_closed`` (409).  1 fen to
  :data:`~sync.contract.CHANNEL_MAX_FEN` (the contract); ``paid_at`` neither ahead of the
  station's clock by more than its clock skew allowance nor more than :data:`PAID_AT_MAX_AGE`
  old.  A channel payment is credit only: it settles no arrears item (those are paid at a
  counter).
- **Exactly once.** A payment is one row, UNIQUE (channel, the channel's transaction id).  The
  same id with the same body answers the payment held (``replayed``); with another body it is a
  409 ``conflict``.  A refused payment is not kept: a retry after the cause is fixed (the
  channel allowed the office, say) is taken.
- **Reaching the meter.** The control loop's balance counts a channel payment received since the
  customer came under control, like a counter's remote sale (:mod:`sync.central.control`), so a
  tripped customer who pays through a channel gets a close permit on the next run.
- **Days** are in the office time zone (:data:`DAY_ZONE`; the station has no time zone setting)
  and a payment belongs to the day of its ``paid_at`` (the channel's time, which its own file
  uses), so a payment taken at 23:59:59 and received after midnight is on the same day on both
  sides.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app.domain import ids
from sync import contract as c
from sync.central import models as m
from sync.central.base import RequestRefused
from sync.central.base import StoreBase
from sync.central.base import Tx
from sync.central.base import canonical_json
from sync.central.base import chunks
from sync.central.base import sha256_hex

DAY_ZONE: Final = ZoneInfo("Asia/Shanghai")
PAID_AT_MAX_AGE: Final = dt.timedelta(days=3)
_CHANNEL_ID = re.compile(ids.CODE.pattern.removeprefix("^").removesuffix("$"), re.ASCII)


@dataclass(frozen=True)
class Channel:
    """A payment channel, as its bearer token identifies it."""

    channel_id: str
    name: str
    all_offices: bool
    offices: frozenset[str]

    def serves(self, office_code: str) -> bool:
        return self.all_offices or office_code in self.offices


class ChannelError(RequestRefused):
    """A payment channel's request refused (see :class:`RequestRefused`)."""


@dataclass(frozen=True)
class Paid:
    """The answer to a payment: the one held, and whether it was held before (a replay)."""

    payment: c.ChannelPayment
    replayed: bool


def check_channel_id(channel_id: str) -> str:
    if not _CHANNEL_ID.fullmatch(channel_id):
        raise ValueError(f"channel id {channel_id!r} is not valid: {ids.CODE.rule}")
    return channel_id


# --------------------------------------------------------------------------- administration


def add_channel(
    store: StoreBase, channel_id: str, name: str, offices: Iterable[str], all_offices: bool
) -> str:
    """Add a channel; answers its token (shown once: only the hash is kept).  ``offices`` must
    be offices the station knows; ``all_offices`` serves every office instead."""
    check_channel_id(channel_id)
    wanted = sorted(set(offices))
    if all_offices == bool(wanted):
        raise ValueError("give the offices the channel serves, or all offices, not both")
    if len(name) > 64:
        raise ValueError("a channel's name has at most 64 characters")
    token = secrets.token_urlsafe(32)

    def work(tx: Tx) -> None:
        known = set(tx.conn.scalars(select(m.offices.c.code)))
        unknown = [o for o in wanted if o not in known]
        if unknown:
            raise ValueError(f"no such office: {', '.join(unknown)}")
        exists = tx.conn.execute(
            select(m.channels.c.id).where(m.channels.c.id == channel_id)
        ).first()
        if exists is not None:
            raise ValueError(f"a channel {channel_id} exists already")
        tx.conn.execute(
            insert(m.channels).values(
                id=channel_id,
                name=name,
                token_hash=sha256_hex(token),
                all_offices=all_offices,
                created_at=tx.now,
                revoked_at=None,
            )
        )
        if wanted:
            tx.conn.execute(
                insert(m.channel_offices),
                [{"channel_id": channel_id, "office_code": o} for o in wanted],
            )

    try:
        store.write(work)
    except IntegrityError as exc:  # added at the same moment by another administrator
        raise ValueError(f"a channel {channel_id} exists already") from exc
    return token


def list_channels(store: StoreBase) -> list[dict[str, Any]]:
    ch, co = m.channels.c, m.channel_offices.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(ch.id, ch.name, ch.all_offices, ch.created_at, ch.revoked_at).order_by(ch.id)
        ).all()
        served: dict[str, list[str]] = {}
        for channel_id, office in conn.execute(
            select(co.channel_id, co.office_code).order_by(co.channel_id, co.office_code)
        ):
            served.setdefault(channel_id, []).append(office)
    return [
        {
            "id": r.id,
            "name": r.name,
            "all_offices": bool(r.all_offices),
            "offices": served.get(r.id, []),
            "created_at": r.created_at,
            "revoked_at": r.revoked_at,
        }
        for r in rows
    ]


def revoke_channel(store: StoreBase, channel_id: str) -> bool:
    """Revoke a channel (False: no such channel).  Its payments stay and still count."""
    ch = m.channels.c

    def work(tx: Tx) -> bool:
        found = tx.conn.execute(select(ch.revoked_at).where(ch.id == channel_id)).first()
        if found is None:
            return False
        if found.revoked_at is None:
            tx.conn.execute(update(m.channels).where(ch.id == channel_id).values(revoked_at=tx.now))
        return True

    return store.write(work)


def authenticate(store: StoreBase, token: str) -> Channel | None:
    """The channel ``token`` belongs to, unless unknown or revoked."""
    if not token or len(token) > 256:
        return None
    ch, co = m.channels.c, m.channel_offices.c
    with store.engine.connect() as conn:
        row = conn.execute(
            select(ch.id, ch.name, ch.all_offices).where(
                ch.token_hash == sha256_hex(token), ch.revoked_at.is_(None)
            )
        ).first()
        if row is None:
            return None
        offices = frozenset(conn.scalars(select(co.office_code).where(co.channel_id == row.id)))
    return Channel(row.id, row.name, bool(row.all_offices), offices)


# --------------------------------------------------------------------------- payments


def _payment(row: Any) -> c.ChannelPayment:
    return c.ChannelPayment.model_validate(row, from_attributes=True)


def _held(tx: Tx, channel_id: str, txn_id: str) -> Any:
    cp = m.channel_payments.c
    return tx.conn.execute(
        select(m.channel_payments).where(cp.channel_id == channel_id, cp.txn_id == txn_id)
    ).first()


def _customer_checks(tx: Tx, channel: Channel, customer_no: str) -> str:
    """The customer's office, when this channel may take a payment for them."""
    cu = m.customers.c
    row = tx.conn.execute(
        select(cu.office_code, cu.meter_kind, cu.status).where(cu.customer_no == customer_no)
    ).first()
    if row is None or not channel.serves(row.office_code):
        code = "customer_not_allowed"
        raise ChannelError(
            c.CHANNEL_REFUSALS[code][0],
            code,
            f"customer {customer_no} is not one this channel may take payments for",
        )
    if row.meter_kind != "remote":
        code = "not_remote"
        raise ChannelError(
            c.CHANNEL_REFUSALS[code][0],
            code,
            f"customer {customer_no} has a card meter: the credit is written onto the card at a "
            "counter",
        )
    if row.status == "closed":  # a paused account may still be paid
        code = "customer_closed"
        raise ChannelError(
            c.CHANNEL_REFUSALS[code][0], code, f"customer {customer_no}'s account is closed"
        )
    return str(row.office_code)


def _check_time(store: StoreBase, now: dt.datetime, paid_at: dt.datetime) -> None:
    if paid_at > now + store.clock_skew:
        code = "future_paid_at"
        raise ChannelError(c.CHANNEL_REFUSALS[code][0], code, "paid_at is in the future")
    if paid_at < now - PAID_AT_MAX_AGE:
        code = "stale_paid_at"
        raise ChannelError(
            c.CHANNEL_REFUSALS[code][0], code, "paid_at is more than 3 days in the past"
        )


def pay(store: StoreBase, channel: Channel, req: c.ChannelPaymentRequest) -> Paid:
    """Take a payment once per (channel, ``txn_id``); raises :class:`ChannelError`."""
    digest = sha256_hex(canonical_json(req.model_dump(mode="json")))

    def replay(row: Any) -> Paid:
        if row.body_hash != digest:
            raise ChannelError(
                409,
                "conflict",
                f"transaction {req.txn_id} was taken before with another body",
            )
        return Paid(_payment(row), replayed=True)

    def work(tx: Tx) -> Paid:
        row = _held(tx, channel.channel_id, req.txn_id)
        if row is not None:
            return replay(row)
        office = _customer_checks(tx, channel, req.customer_no)
        _check_time(store, tx.now, req.paid_at)
        values = {
            "channel_id": channel.channel_id,
            "txn_id": req.txn_id,
            "customer_no": req.customer_no,
            "office_code": office,
            "amount_fen": req.amount_fen,
            "paid_at": req.paid_at.astimezone(dt.UTC),
            "received_at": tx.now,
            "body_hash": digest,
        }
        tx.conn.execute(insert(m.channel_payments).values(**values))
        return Paid(_payment(_held(tx, channel.channel_id, req.txn_id)), replayed=False)

    # the customer's office lock (as a counter's records for them take it); a concurrent
    # first post of the same txn_id loses the UNIQUE race and its retry replays the winner's
    office = _office_of(store, req.customer_no)
    return store.write(work, (), (office,) if office else None)


def _office_of(store: StoreBase, customer_no: str) -> str | None:
    cu = m.customers.c
    with store.engine.connect() as conn:
        found = conn.execute(
            select(cu.office_code).where(cu.customer_no == customer_no)
        ).scalar_one_or_none()
    return None if found is None else str(found)


def payment(store: StoreBase, channel: Channel, txn_id: str) -> c.ChannelPayment | None:
    """The payment this channel made under ``txn_id``, if the station holds it."""
    cp = m.channel_payments.c
    with store.engine.connect() as conn:
        row = conn.execute(
            select(m.channel_payments).where(
                cp.channel_id == channel.channel_id, cp.txn_id == txn_id
            )
        ).first()
    return None if row is None else _payment(row)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The day in :data:`DAY_ZONE`, as UTC [start, end)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=DAY_ZONE)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=DAY_ZONE)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def day_payments(store: StoreBase, channel_id: str, day: dt.date) -> list[c.ChannelPayment]:
    """The payments of ``channel_id`` whose ``paid_at`` falls on ``day``, in time order."""
    cp = m.channel_payments.c
    start, end = day_bounds(day)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(m.channel_payments)
            .where(cp.channel_id == channel_id, cp.paid_at >= start, cp.paid_at < end)
            .order_by(cp.paid_at, cp.txn_id)
        ).all()
    return [_payment(r) for r in rows]


def payments_by_txn(
    store: StoreBase, channel_id: str, txn_ids: Iterable[str]
) -> dict[str, c.ChannelPayment]:
    """The payments of ``channel_id`` the station holds under these transaction ids."""
    cp = m.channel_payments.c
    wanted = sorted(set(txn_ids))
    found: dict[str, c.ChannelPayment] = {}
    with store.engine.connect() as conn:
        for part in chunks(wanted):
            for row in conn.execute(
                select(m.channel_payments).where(
                    cp.channel_id == channel_id, cp.txn_id.in_(list(part))
                )
            ):
                found[row.txn_id] = _payment(row)
    return found


def channel_exists(store: StoreBase, channel_id: str) -> bool:
    with store.engine.connect() as conn:
        return (
            conn.execute(select(m.channels.c.id).where(m.channels.c.id == channel_id)).first()
            is not None
        )
