"""PC/SC result codes and reader states as ints, and their names."""

from __future__ import annotations

from typing import Any

from smartcard import scard


def _u32(value: Any) -> int:
    return int(value) & 0xFFFFFFFF


_OK = 0


_W_REMOVED_CARD = _u32(scard.SCARD_W_REMOVED_CARD)


_W_RESET_CARD = _u32(scard.SCARD_W_RESET_CARD)


_W_UNPOWERED_CARD = _u32(scard.SCARD_W_UNPOWERED_CARD)


_W_UNRESPONSIVE_CARD = _u32(scard.SCARD_W_UNRESPONSIVE_CARD)


_E_NO_SMARTCARD = _u32(scard.SCARD_E_NO_SMARTCARD)


_E_INVALID_HANDLE = _u32(scard.SCARD_E_INVALID_HANDLE)


_E_UNKNOWN_READER = _u32(scard.SCARD_E_UNKNOWN_READER)


_E_READER_UNAVAILABLE = _u32(scard.SCARD_E_READER_UNAVAILABLE)


_E_NO_READERS_AVAILABLE = _u32(scard.SCARD_E_NO_READERS_AVAILABLE)


_E_NO_SERVICE = _u32(scard.SCARD_E_NO_SERVICE)


_E_SERVICE_STOPPED = _u32(scard.SCARD_E_SERVICE_STOPPED)


_F_COMM_ERROR = _u32(scard.SCARD_F_COMM_ERROR)


_E_TIMEOUT = _u32(scard.SCARD_E_TIMEOUT)


_E_CANCELLED = _u32(scard.SCARD_E_CANCELLED)


_E_SHARING_VIOLATION = _u32(scard.SCARD_E_SHARING_VIOLATION)


_CARD_GONE = {_W_REMOVED_CARD, _W_RESET_CARD, _W_UNPOWERED_CARD, _E_NO_SMARTCARD, _E_INVALID_HANDLE}


_READER_GONE = {_E_UNKNOWN_READER, _E_READER_UNAVAILABLE, _E_NO_READERS_AVAILABLE}


_SERVICE_GONE = {_E_NO_SERVICE, _E_SERVICE_STOPPED, _F_COMM_ERROR}


# the context itself is dead (pcscd stopped or restarted): establish a new one
_CONTEXT_LOST = _SERVICE_GONE | {_E_INVALID_HANDLE}


_HRESULT_NAMES = {
    _u32(getattr(scard, name)): name
    for name in dir(scard)
    if name.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_"))
    and isinstance(getattr(scard, name), int)
}


_PRESENT = int(scard.SCARD_STATE_PRESENT)


_CHANGED = int(scard.SCARD_STATE_CHANGED)


_GONE_STATES = int(scard.SCARD_STATE_UNKNOWN) | int(scard.SCARD_STATE_IGNORE)


_UNAWARE = int(scard.SCARD_STATE_UNAWARE)


_PNP = "\\\\?PnP?\\Notification"


# after an unclear transmit failure: how long to wait for pcscd to notice a removal
_REMOVAL_GRACE_MS = 1500


_MAX_GET_RESPONSE = 64


def hresult_text(hresult: int) -> str:
    """``SCARD_W_REMOVED_CARD 0x80100069`` — for logs and error details."""
    hr = _u32(hresult)
    name = _HRESULT_NAMES.get(hr)
    return f"{name} 0x{hr:08X}" if name else f"0x{hr:08X}"
