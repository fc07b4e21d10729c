"""The training card tray (:class:`app.ports.CardTray`): emulated cards a person puts into a
virtual reader, takes out again and carries to a simulated meter, so the whole counter flow can
be tried without hardware.

Everything lives under ``<data dir>/training-cards/``:

* ``tray.json``: the tray's index (card id = serial hex, the image file, the customer it was
  opened for, the number of a blank card);
* ``<serial>.json``: each card's image (:class:`cardio.emulator.CardImage`), saved by the card
  emulator after every change, so the cards keep what was written on them across restarts;
* ``meters/<meter_no>.json``: the state of each customer's simulated meter
  (:class:`cardio.meter_sim.MeterSimulator`).

Cards are made with the installation's keystore (the demo keystore when there is none), like
``cardvend card blank``.  At first use the tray opens the accounts of a handful of demo customers
(:data:`DEMO_CARDS`) that have no card yet -- card-meter customers of the demo office only, so a
real archive is never touched -- with :func:`app.services.selling.open_account` in training mode
(nothing reaches the outbox) and without a first purchase, so a person can sell at once.  Those
accounts are opened in the name of the first active teller (or else supervisor);
the audit log shows them as ``open_account`` of that operator.

Inserting and removing a card deliver :class:`app.ports.CardEvent`\\ s to subscribers (like
:meth:`cardio.pcsc.PcscReaderPort.subscribe`), on the thread that made the change.

Not thread-safe by design beyond one lock around each call: the window makes every call on its
single card thread.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from app.context import AppContext
from app.domain.card import CardError
from app.domain.card import NoCard
from app.domain.card import UnissuedCard
from app.domain.customers import CustomerStatus
from app.domain.customers import MeterKind
from app.domain.operators import Role
from app.errors import CardVendError
from app.errors import NotFound
from app.fileio import write_atomically
from app.i18n import N_
from app.i18n import _
from app.ports import CardEvent
from app.ports import CardEventKind
from app.ports import CardTerminal
from app.ports import KeyProvider
from app.ports import TrayCard
from app.services import demo
from app.services import selling
from app.services.auth import Principal
from app.services.customers import customer_view
from app.services.operators import list_operators
from app.settings import TRAINING_MODE
from app.settings import Settings
from cardio import wiring
from cardio.channel import EmulatedChannel
from cardio.emulator import CardImage
from cardio.emulator import UserCardOS
from cardio.terminal import ApduTerminal

log = logging.getLogger(__name__)

FOLDER = "training-cards"
INDEX = "tray.json"
DEMO_CARDS = 5  # demo customers whose cards the tray opens at first use
READER = N_("training card tray")  # the reader name events carry (a marked message)
INDEX_FORMAT = 1

EventCallback = Callable[[CardEvent], None]


class TrayError(CardVendError):
    code = "tray"
    template = N_("{detail}")


@dataclass
class _Entry:
    card_id: str  # the serial, 16 hex digits
    file: str  # image file name in the folder
    customer_no: str | None = None
    name: str | None = None
    blank_no: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def card(self) -> TrayCard:
        if self.customer_no:
            label = f"{self.name or ''} {self.customer_no}".strip()
        else:
            label = _("blank card {number}", number=self.blank_no or 0)
        return TrayCard(self.card_id, label, self.customer_no)


def training_settings(settings: Settings) -> Settings:
    """A copy of ``settings`` in training mode (the original is left as it is)."""
    copied = copy.deepcopy(settings)
    copied.set(TRAINING_MODE.key, True)
    return copied


class TrainingCardTray:
    """:class:`app.ports.CardTray` over card images in ``<data dir>/training-cards/``.

    Building it does no I/O; the first call that needs the cards loads the keystore and the
    index, and opens the demo customers' accounts (see the module docstring)."""

    def __init__(self, ctx: AppContext, *, demo_cards: int = DEMO_CARDS) -> None:
        self.ctx = ctx
        self.folder = ctx.paths.data_dir / FOLDER
        self.demo_cards = demo_cards
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] | None = None
        self._keys: KeyProvider | None = None
        self._master: Any = None
        self._inserted: str | None = None
        self._terminal: ApduTerminal | None = None
        self._subscribers: dict[int, EventCallback] = {}
        self._next_key = 0

    # ------------------------------------------------------------------ the port

    def cards(self) -> list[TrayCard]:
        with self._lock:
            entries = self._load()
            return [e.card() for e in sorted(entries.values(), key=_order)]

    def new_blank(self) -> TrayCard:
        with self._lock:
            entries = self._load()
            entry = self._make_blank(entries)
            self._save_index()
            return entry.card()

    def inserted(self) -> TrayCard | None:
        with self._lock:
            if self._inserted is None:
                return None
            return self._load()[self._inserted].card()

    def insert(self, card_id: str) -> None:
        """Put ``card_id`` into the tray's reader (a card already in is taken out first)."""
        with self._lock:
            entry = self._entry(card_id)
            if self._inserted == card_id:
                return
            if self._inserted is not None:
                self.remove()
            self._terminal = ApduTerminal(
                EmulatedChannel(self._card_os(entry)),
                self._key_provider(),
                utility_code=wiring.utility_code(self.ctx),
            )
            self._inserted = card_id
        self._emit(CardEvent(CardEventKind.CARD_INSERTED, READER))

    def remove(self) -> None:
        with self._lock:
            if self._inserted is None:
                return
            card_id, terminal = self._inserted, self._terminal
            self._inserted, self._terminal = None, None
            if terminal is not None:
                terminal.channel.close()
            self._note_owner(self._load()[card_id])
        self._emit(CardEvent(CardEventKind.CARD_REMOVED, READER))

    def terminal(self) -> CardTerminal:
        with self._lock:
            if self._terminal is None:
                raise NoCard(reader=READER)
            return self._terminal

    def to_meter(self, card_id: str, *, hours: float = 0.0, load_kw: float = 0.0) -> str:
        """The customer takes the card home: out of the reader, ``hours`` at ``load_kw`` of use
        on the customer's meter, then the card goes into the meter. Returns what happened."""
        from cardio.meter_sim import RELAY_TRIPPED
        from cardio.meter_sim import MeterSimulator

        if hours < 0 or load_kw < 0:
            raise TrayError(detail=N_("Hours and load cannot be negative."))
        with self._lock:
            entry = self._entry(card_id)
            if self._inserted == card_id:
                self.remove()
            keys = self._key_provider()
            terminal = ApduTerminal(
                EmulatedChannel(self._card_os(entry)),
                keys,
                utility_code=wiring.utility_code(self.ctx),
            )
            try:
                try:
                    contents = terminal.read()
                except UnissuedCard:
                    raise TrayError(
                        detail=N_(
                            "This card is blank: open an account on it first, then take it to "
                            "the meter."
                        )
                    ) from None
                if contents.parameters is None:
                    raise TrayError(detail=N_("This card is bound to no meter."))
                meter_no = contents.parameters.meter_no
                meter = MeterSimulator(
                    self.folder / "meters" / f"{meter_no}.json",
                    keys,
                    meter_no=meter_no,
                    clock=self.ctx.clock,
                )
                minutes = round(hours * 60)
                load_w = round(load_kw * 1000)
                used_wh = charged = 0
                if minutes:
                    consumed = meter.consume(minutes, load_w)
                    used_wh, charged = consumed.energy_wh, consumed.charged
                result = meter.insert(terminal)
            finally:
                terminal.channel.close()
            self._note_owner(entry)
        state = meter.state
        lines = [
            _(
                "Meter {meter_no}: {used} kWh used for {cost} yuan in {hours} h.",
                meter_no=meter_no,
                used=f"{used_wh / 1000:.2f}",
                cost=_yuan(charged),
                hours=f"{hours:g}",
            )
        ]
        if not result.accepted:
            lines.append(_("The meter refused the card ({reason}).", reason=result.reason or "-"))
        elif result.credited:
            lines.append(
                _(
                    "Purchase {count} loaded: {credited} yuan added.",
                    count=state.purchase_count,
                    credited=_yuan(result.credited),
                )
            )
        else:
            lines.append(_("No new purchase on the card; the meter wrote back its state."))
        lines.append(
            _(
                "Credit left {remaining} yuan; {power}.",
                remaining=_yuan(state.remaining),
                power=_("power off (relay tripped)")
                if state.relay == RELAY_TRIPPED
                else _("power on"),
            )
        )
        return " ".join(lines)

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Card inserted / removed events, delivered on the thread that made the change (first
        the current state). Returns the function that stops them."""
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._subscribers[key] = callback
            present = self._inserted is not None
        callback(CardEvent(CardEventKind.READER_ADDED, READER))
        if present:
            callback(CardEvent(CardEventKind.CARD_INSERTED, READER))

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def _emit(self, event: CardEvent) -> None:
        with self._lock:
            callbacks = list(self._subscribers.values())
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("tray event callback failed on %s", event)

    # ------------------------------------------------------------------ the cards

    def _key_provider(self) -> KeyProvider:
        if self._keys is None:
            from cardio.keys import SoftwareKeyProvider

            wiring.ensure_demo_keystore(self.ctx)
            self._master = wiring.load_master_keys(self.ctx)
            self._keys = SoftwareKeyProvider(self._master)
        return self._keys

    def _card_os(self, entry: _Entry) -> UserCardOS:
        path = self.folder / entry.file
        return UserCardOS(CardImage.load(path), persist_path=path)

    def _entry(self, card_id: str) -> _Entry:
        entry = self._load().get(card_id)
        if entry is None:
            raise NotFound(what=N_("Card"), key=card_id)
        return entry

    def _load(self) -> dict[str, _Entry]:
        if self._entries is not None:
            return self._entries
        self.folder.mkdir(parents=True, exist_ok=True)
        entries: dict[str, _Entry] = {}
        index = self.folder / INDEX
        if index.exists():
            try:
                data = json.loads(index.read_text(encoding="utf-8"))
                for raw in data.get("cards", []):
                    entry = _Entry(**raw)
                    if (self.folder / entry.file).exists():
                        entries[entry.card_id] = entry
            except (OSError, ValueError, TypeError) as exc:
                log.warning("training tray index %s unreadable (%s); starting afresh", index, exc)
                entries = {}
        self._entries = entries
        self._open_demo_accounts(entries)
        if not any(e.customer_no is None for e in entries.values()):
            self._make_blank(entries)
        self._save_index()
        return entries

    def _save_index(self) -> None:
        assert self._entries is not None
        data = {
            "format": INDEX_FORMAT,
            "cards": [e.to_json() for e in sorted(self._entries.values(), key=_order)],
        }
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        write_atomically(self.folder / INDEX, text.encode("utf-8"))

    def _make_blank(self, entries: dict[str, _Entry]) -> _Entry:
        self._key_provider()
        serial = os.urandom(8)
        keys = {int(r): k for r, k in self._master.diversified_card_keys(serial).items()}
        card_id = serial.hex().upper()
        file = f"{card_id}.json"
        CardImage.blank(serial, keys).save(self.folder / file)
        number = 1 + max((e.blank_no or 0 for e in entries.values()), default=0)
        entry = _Entry(card_id, file, blank_no=number)
        entries[card_id] = entry
        return entry

    def _note_owner(self, entry: _Entry) -> None:
        """A blank card may have become a customer's card (an account opened on it at the
        counter): the tray then shows the customer."""
        if entry.customer_no is not None:
            return
        try:
            contents = ApduTerminal(EmulatedChannel(self._card_os(entry))).read()
        except CardError:
            return
        if contents.parameters is None:
            return
        entry.customer_no = contents.parameters.customer_no
        try:
            entry.name = customer_view(self.ctx.db, entry.customer_no).name
        except CardVendError:
            entry.name = None
        self._save_index()

    # ------------------------------------------------------------------ demo accounts

    def _open_demo_accounts(self, entries: dict[str, _Entry]) -> None:
        have = sum(1 for e in entries.values() if e.customer_no is not None)
        if have >= self.demo_cards:
            return
        actor = self._training_actor()
        if actor is None:
            log.info("training tray: no teller in the demo office; blank cards only")
            return
        settings = training_settings(self.ctx.settings)
        for i in range(demo.CUSTOMERS):
            if have >= self.demo_cards:
                break
            customer_no = demo.demo_customer(i)["customer_no"]
            try:
                view = customer_view(self.ctx.db, customer_no)
            except CardVendError:
                break  # no demo data in this database
            if (
                view.office != demo.OFFICE
                or view.meter_kind != MeterKind.CARD.value
                or view.status != CustomerStatus.ACTIVE.value
                or view.card_serial
            ):
                continue
            entry = self._make_blank(entries)
            self._save_index()
            channel = EmulatedChannel(self._card_os(entry))
            try:
                selling.open_account(
                    self.ctx.db,
                    ApduTerminal(
                        channel, self._key_provider(), utility_code=wiring.utility_code(self.ctx)
                    ),
                    actor=actor,
                    customer_no=customer_no,
                    clock=self.ctx.clock,
                    settings=settings,
                )
            except CardVendError as exc:
                log.warning("training tray: account of %s not opened: %s", customer_no, exc)
                continue
            finally:
                channel.close()
            entry.customer_no, entry.name, entry.blank_no = customer_no, view.name, None
            have += 1
            log.info("training tray: opened the account of demo customer %s", customer_no)

    def _training_actor(self) -> Principal | None:
        with self.ctx.db.read() as session:
            operators = list_operators(session)
        for role in (Role.TELLER, Role.SUPERVISOR):
            for op in operators:
                if op.role == role.value and not op.disabled:
                    now = self.ctx.clock.now()
                    return Principal(op.id, op.name, role, self.ctx.counter_id, now, now)
        return None


def _order(entry: _Entry) -> tuple[int, str]:
    # customers first (by number), then blank cards in the order they were made
    if entry.customer_no:
        return (0, entry.customer_no)
    return (1, f"{entry.blank_no or 0:08d}")


def _yuan(fen: int) -> str:
    from app.money import format_yuan

    return format_yuan(fen)


def make_tray(ctx: AppContext) -> TrainingCardTray:
    return TrainingCardTray(ctx)


__all__ = ["READER", "TrainingCardTray", "TrayError", "make_tray", "training_settings"]
