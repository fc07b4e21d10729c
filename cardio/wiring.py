"""Builds the card-side adapters a command or the GUI needs from the settings."""

from __future__ import annotations

import getpass
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.context import AppContext
from app.fileio import private_dir
from app.i18n import _
from app.ports import ApduChannel
from app.ports import CardTerminal
from app.ports import KeyProvider
from app.ports import PassphraseHandler
from app.settings import CARD_READER
from app.settings import KEY_PROVIDER
from app.settings import KEYSTORE_FILE
from app.settings import PSAM_READER
from app.settings import UTILITY_CODE
from cardio.keys import KeystoreError
from cardio.keys import MasterKeys
from cardio.keys import PsamKeyProvider
from cardio.keys import SoftwareKeyProvider
from cardio.keys import create_keystore
from cardio.keys import open_keystore

if TYPE_CHECKING:
    from cardio.pcsc import CardThread

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "CARDVEND_KEYSTORE_PASSPHRASE"
# The demo keystore's passphrase: demonstration and training only, like the demo passwords.
DEMO_PASSPHRASE = "demo-keystore"


def keystore_path(ctx: AppContext) -> Path:
    configured = ctx.settings.value(KEYSTORE_FILE)
    return Path(configured) if configured else ctx.paths.data_dir / "keystore.json"


def ensure_demo_keystore(ctx: AppContext) -> bool:
    """Create the demo keystore (fresh random keys, the demo passphrase) if there is none."""
    path = keystore_path(ctx)
    if path.exists():
        return False
    private_dir(path.parent)
    create_keystore(path, os.environ.get(PASSPHRASE_ENV) or DEMO_PASSPHRASE)
    log.info("created the demo keystore at %s", path)
    return True


class TerminalPassphrase:
    """The command line's :class:`app.ports.PassphraseHandler`: a getpass prompt, on the main
    thread only, and only with a terminal to ask on (``None`` otherwise)."""

    def passphrase(self, prompt: str) -> str | None:
        if threading.current_thread() is not threading.main_thread() or not sys.stdin.isatty():
            return None
        return getpass.getpass(f"{prompt}: ")


def load_master_keys(ctx: AppContext, handler: PassphraseHandler | None = None) -> MasterKeys:
    """The master keys: the passphrase from the environment, else the demo passphrase, else
    the person's answer through ``handler`` (the keystore's error when there is none)."""
    path = keystore_path(ctx)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return open_keystore(path, passphrase)
    try:
        return open_keystore(path, DEMO_PASSPHRASE)
    except KeystoreError:
        answer = None if handler is None else handler.passphrase(_("Keystore passphrase"))
        if not answer:
            raise
    return open_keystore(path, answer)


def key_provider(
    ctx: AppContext,
    handler: PassphraseHandler | None = None,
    card_thread: CardThread | None = None,
) -> KeyProvider:
    """A new key provider from the settings (a PSAM in its reader, or the software keystore).
    Building one is costly (an scrypt derivation, a PC/SC connection): a running program
    keeps one, :class:`KeySource`."""
    if ctx.settings.value(KEY_PROVIDER) == "psam":
        from cardio.pcsc import PcscReaderPort

        port = PcscReaderPort(card_thread)
        return PsamKeyProvider(port.connect(ctx.settings.value(PSAM_READER)))
    return SoftwareKeyProvider(load_master_keys(ctx, handler))


class KeySource:
    """The one key provider of a running program, built on first use (the keystore's scrypt
    derivation runs once, a PSAM is connected once) and closed by :meth:`close`."""

    def __init__(
        self,
        ctx: AppContext,
        handler: PassphraseHandler | None = None,
        card_thread: CardThread | None = None,
    ) -> None:
        self._ctx = ctx
        self.handler = handler
        self._card_thread = card_thread
        self._lock = threading.Lock()
        self._keys: KeyProvider | None = None

    def get(self) -> KeyProvider:
        with self._lock:
            if self._keys is None:
                self._keys = key_provider(self._ctx, self.handler, self._card_thread)
            return self._keys

    def close(self) -> None:
        """Close the PSAM's connection (a software keystore holds none)."""
        with self._lock:
            keys, self._keys = self._keys, None
        if isinstance(keys, PsamKeyProvider):
            keys.close()


def utility_code(ctx: AppContext) -> str:
    return ctx.settings.value(UTILITY_CODE)


def terminal_factory(
    ctx: AppContext, card_thread: CardThread | None = None, keys: KeySource | None = None
) -> Callable[[str | None, str | None], CardTerminal]:
    """Card terminals for the ledger commands: an emulated card image (in-process), a named
    PC/SC reader, or the ``card_reader`` setting (the first reader when it is empty).
    ``card_thread``: the one card thread the PC/SC traffic runs on, ``keys``: the one key
    provider (main.py builds both)."""
    source = keys or KeySource(ctx, TerminalPassphrase(), card_thread)

    def make(reader: str | None, image: str | None) -> CardTerminal:
        from cardio.terminal import ApduTerminal

        keys = source.get()
        if image:
            from cardio.channel import EmulatedChannel
            from cardio.emulator import CardImage
            from cardio.emulator import UserCardOS

            path = Path(image)
            if not path.exists():
                from app.errors import ValidationError
                from app.i18n import N_

                raise ValidationError(N_("there is no card image at {path}"), path=str(path))
            channel: ApduChannel = EmulatedChannel(
                UserCardOS(CardImage.load(path), persist_path=path)
            )
        else:
            from cardio.pcsc import PcscReaderPort

            port = PcscReaderPort(card_thread)
            name = reader or str(ctx.settings.get(CARD_READER.key) or "") or port.readers()[0]
            channel = port.connect(name, timeout=float(os.environ.get("CARDVEND_CARD_WAIT", "5")))
        return ApduTerminal(channel, keys, utility_code=utility_code(ctx))

    return make
