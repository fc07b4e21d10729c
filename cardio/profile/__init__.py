"""Byte layouts of the CardVend card profile, version 2 (the reference is ``cardio/PROFILE.md``).

Encoders turn the records of :mod:`app.domain.card` into the exact bytes of a card file (a record
frame zero-padded to the file size); decoders turn file contents back into records.

* Every decoder returns ``None`` for an empty (all-zero) file and raises only
  :class:`~app.domain.card.CorruptCardFile` (anything that does not parse, with the file's name)
  or :class:`~app.domain.card.UnsupportedProfile` (a parameter file or FCI of another profile
  version).  A decoded record encodes back to exactly the bytes it came from.
* Every encoder validates its record and raises :class:`NotCardable` (a ``ValueError`` that a
  person can read) for a value the card cannot carry; nothing half-checked is ever encoded.
"""

from __future__ import annotations

from app.domain.card import PROFILE_VERSION
from cardio.profile.codec import NotCardable
from cardio.profile.codec import bcd_decode
from cardio.profile.codec import bcd_encode
from cardio.profile.codec import frame
from cardio.profile.codec import time6_decode
from cardio.profile.codec import time6_encode
from cardio.profile.codec import unframe
from cardio.profile.fci import Fci
from cardio.profile.fci import build_card_atr
from cardio.profile.fci import build_fci
from cardio.profile.fci import build_psam_atr
from cardio.profile.fci import build_psam_fci
from cardio.profile.fci import is_psam_atr
from cardio.profile.fci import parse_card_atr
from cardio.profile.fci import parse_fci
from cardio.profile.fci import parse_psam_fci
from cardio.profile.layout import APP_AID
from cardio.profile.layout import APP_FID
from cardio.profile.layout import BEIJING
from cardio.profile.layout import BODY_SIZES
from cardio.profile.layout import FILE_NAMES
from cardio.profile.layout import FILE_SIZES
from cardio.profile.layout import MF_FID
from cardio.profile.layout import PERIOD_CODES
from cardio.profile.layout import PSAM_AID
from cardio.profile.layout import PURCHASE_BODY
from cardio.profile.layout import SFI_BACKUP_TARIFF
from cardio.profile.layout import SFI_CURRENT_TARIFF
from cardio.profile.layout import SFI_JOB
from cardio.profile.layout import SFI_PARAMETERS
from cardio.profile.layout import SFI_PURCHASE
from cardio.profile.layout import SFI_WRITE_BACK
from cardio.profile.layout import STATE_BLANK
from cardio.profile.layout import STATE_ISSUED
from cardio.profile.layout import TARIFF_KIND_CODES
from cardio.profile.records import decode_job
from cardio.profile.records import decode_parameters
from cardio.profile.records import decode_purchase
from cardio.profile.records import decode_tariff
from cardio.profile.records import decode_write_back
from cardio.profile.records import encode_job
from cardio.profile.records import encode_parameters
from cardio.profile.records import encode_purchase
from cardio.profile.records import encode_purchase_body
from cardio.profile.records import encode_tariff
from cardio.profile.records import encode_write_back
from cardio.profile.records import encode_write_back_body

__all__ = [
    "APP_AID",
    "APP_FID",
    "BEIJING",
    "BODY_SIZES",
    "FILE_NAMES",
    "FILE_SIZES",
    "MF_FID",
    "PERIOD_CODES",
    "PROFILE_VERSION",
    "PSAM_AID",
    "PURCHASE_BODY",
    "SFI_BACKUP_TARIFF",
    "SFI_CURRENT_TARIFF",
    "SFI_JOB",
    "SFI_PARAMETERS",
    "SFI_PURCHASE",
    "SFI_WRITE_BACK",
    "STATE_BLANK",
    "STATE_ISSUED",
    "TARIFF_KIND_CODES",
    "Fci",
    "NotCardable",
    "bcd_decode",
    "bcd_encode",
    "build_card_atr",
    "build_fci",
    "build_psam_atr",
    "build_psam_fci",
    "decode_job",
    "decode_parameters",
    "decode_purchase",
    "decode_tariff",
    "decode_write_back",
    "encode_job",
    "encode_parameters",
    "encode_purchase",
    "encode_purchase_body",
    "encode_tariff",
    "encode_write_back",
    "encode_write_back_body",
    "frame",
    "is_psam_atr",
    "parse_card_atr",
    "parse_fci",
    "parse_psam_fci",
    "time6_decode",
    "time6_encode",
    "unframe",
]
