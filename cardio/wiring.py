"""Builds the card-side adapters a command or the GUI needs from the settings."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.context import AppContext
from app.fileio import private_dir
from app.ports import ApduChannel, CardTerminal, KeyProvider
from app.settings import CARD_READER, KEY_PROVIDER, KEYSTORE_FILE, PSAM_READER, UTILITY_CODE
from cardio.keys import (
    KeystoreError,
    MasterKeys,
    PsamKeyProvider,
    SoftwareKeyProvider,
    create_keystore,
    open_keystore,
)

if TYPE_CHECKING:
    from cardio.pcsc import CardThread

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "CARDVEND_KEYSTORE_PASSPHRASE"
# The demo keystore's passphrase: demonstration and training only, like the demo passwords.
DEMO_PASSPHRASE = "demo-keystore"


def keystore_path(ctx: AppContext) -> Path:
    configured = str(ctx.settings.get(KEYSTORE_FILE.key) or "")
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


def load_master_keys(ctx: AppContext) -> MasterKeys:
    path = keystore_path(ctx)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return open_keystore(path, passphrase)
    try:
        return open_keystore(path, DEMO_PASSPHRASE)
    except KeystoreError:
        if not sys.stdin.isatty():
            raise
    return open_keystore(path, getpass.getpass("Keystore passphrase: "))


def key_provider(ctx: AppContext) -> KeyProvider:
    if ctx.settings.get(KEY_PROVIDER.key) == "psam":
        from cardio.pcsc import PcscReaderPort

        return PsamKeyProvider(PcscReaderPort().connect(str(ctx.settings.get(PSAM_READER.key))))
    return SoftwareKeyProvider(load_master_keys(ctx))


def utility_code(ctx: AppContext) -> str:
    return str(ctx.settings.get(UTILITY_CODE.key))


def terminal_factory(
    ctx: AppContext, card_thread: CardThread | None = None
) -> Callable[[str | None, str | None], CardTerminal]:
    """Card terminals for the ledger commands: an emulated card image (in-process), a named
    PC/SC reader, or the ``card_reader`` setting (the first reader when it is empty).
    ``card_thread``: the one card thread the PC/SC traffic runs on (main.py builds it)."""

    def make(reader: str | None, image: str | None) -> CardTerminal:
        from cardio.terminal import ApduTerminal

        keys = key_provider(ctx)
        if image:
            from cardio.channel import EmulatedChannel
            from cardio.emulator import CardImage, UserCardOS

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
