"""The data identifiers (DI3 DI2 DI1 DI0, sent DI0 first) we read and write, with their formats.

A :class:`DataId` knows its code, a name for code and JSON, its value format
(:mod:`cardio.dlt645.formats`) and whether it may be written (function 0x14).  Typed values in,
typed values out: ``REMAINING_AMOUNT.decode(data) -> int`` fen, ``DATE_TIME.encode(datetime)``.

Blocks (``DI1`` or ``DI0`` = ``FF``) carry their members one after the other; a meter sends as
many members as it has (e.g. the total and its configured tariffs), so a block decodes to a
tuple of 1..n values.  ``members`` names them in order.

The table is in ``cardio/dlt645/PROTOCOL.md``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from typing import Final
from typing import Generic
from typing import TypeVar

from cardio.dlt645 import formats as F
from cardio.dlt645.errors import MalformedFrame
from cardio.dlt645.errors import ValueFormatError

T = TypeVar("T")

RATES: Final = 4  # tariffs (费率) 1..4: sharp, peak, flat, valley


@dataclass(frozen=True)
class DataId(Generic[T]):
    code: int  # DI3 DI2 DI1 DI0 as written, e.g. 0x00900200
    name: str
    fmt: F.Format[T]
    writable: bool = False
    members: tuple[DataId[Any], ...] = ()

    @property
    def hex(self) -> str:
        return f"{self.code:08X}"

    @property
    def wire(self) -> bytes:
        """DI0 DI1 DI2 DI3, as sent (before the 0x33 offset)."""
        return self.code.to_bytes(4, "little")

    def encode(self, value: T) -> bytes:
        """The value's bytes; :class:`ValueFormatError` if it does not fit (nothing is sent)."""
        try:
            return self.fmt.encode(value)
        except F.Unfit as exc:
            raise ValueFormatError(self.hex, value, exc.reason, **exc.params) from None

    def decode(self, data: bytes) -> T:
        """The value in received bytes; :class:`MalformedFrame` if they do not fit the format."""
        try:
            return self.fmt.decode(data)
        except F.Unfit as exc:
            raise MalformedFrame(f"DI {self.hex}: {exc}") from None

    def __repr__(self) -> str:
        return f"DataId({self.hex} {self.name})"


def di_code(wire: bytes) -> int:
    """The DI code of the four bytes as sent (DI0 first)."""
    return int.from_bytes(wire[:4], "little")


# --------------------------------------------------------------------------- energy (DI3 = 00)


def _energy(
    kind: int, name: str, fmt: F.Bcd
) -> tuple[DataId[int], tuple[DataId[int], ...], DataId[tuple[int, ...]]]:
    """An energy register: its total, its rates 1..4 and the block of all five."""
    total = DataId(kind << 16, f"{name}_total", fmt)
    rates = tuple(DataId((kind << 16) | (r << 8), f"{name}_rate{r}", fmt) for r in range(1, 5))
    block = DataId(
        (kind << 16) | 0xFF00,
        f"{name}_block",
        F.Repeated(0, "XXXXXX.XX*n", fmt, 1 + RATES),
        members=(total, *rates),
    )
    return total, rates, block


# 组合有功总电能 / 费率1..4电能: signed, Wh
COMBINED_ENERGY, COMBINED_ENERGY_RATES, COMBINED_ENERGY_BLOCK = _energy(
    0x0000, "combined_energy", F.SIGNED_ENERGY
)
# 正向有功总电能 / 费率1..4电能: Wh
POSITIVE_ENERGY, POSITIVE_ENERGY_RATES, POSITIVE_ENERGY_BLOCK = _energy(
    0x0001, "positive_energy", F.ENERGY
)
REMAINING_AMOUNT: Final = DataId(0x00900200, "remaining_amount", F.MONEY)  # 当前剩余金额, fen
OVERDRAFT_AMOUNT: Final = DataId(0x00900201, "overdraft_amount", F.MONEY)  # 当前透支金额, fen

# --------------------------------------------------------------------------- variables (02)
CURRENT_PRICE: Final = DataId(0x02800020, "current_price", F.PRICE)  # 当前电价, rate units

# --------------------------------------------------------------------------- events (03)
PURCHASE_COUNT: Final = DataId(0x03330201, "purchase_count", F.COUNT)  # 上1次购电后总购电次数

# --------------------------------------------------------------------------- parameters (04)
DATE: Final[DataId[dt.date]] = DataId(0x04000101, "date", F.DATE_WEEK, writable=True)
TIME: Final[DataId[dt.time]] = DataId(0x04000102, "time", F.TIME, writable=True)
DATE_TIME: Final[DataId[dt.datetime]] = DataId(
    0x0400010C, "date_time", F.DATE_TIME_WEEK, writable=True
)
METER_ADDRESS: Final = DataId(0x04000401, "meter_address", F.ADDRESS)  # 通信地址
METER_NUMBER: Final = DataId(0x04000402, "meter_number", F.ADDRESS)  # 表号
STATUS_WORDS: Final = tuple(
    DataId(0x04000500 | n, f"status_word{n}", F.WORD) for n in range(1, 8)
)  # 电表运行状态字1..7
(
    STATUS_WORD_1,
    STATUS_WORD_2,
    STATUS_WORD_3,
    STATUS_WORD_4,
    STATUS_WORD_5,
    STATUS_WORD_6,
    STATUS_WORD_7,
) = STATUS_WORDS
STATUS_BLOCK: Final = DataId(
    0x040005FF, "status_words", F.Repeated(0, "XXXX*7", F.WORD, 7), members=STATUS_WORDS
)
ALARM_AMOUNT_1: Final = DataId(0x04001001, "alarm_amount_1", F.MONEY, writable=True)
ALARM_AMOUNT_2: Final = DataId(0x04001002, "alarm_amount_2", F.MONEY, writable=True)
OVERDRAFT_LIMIT: Final = DataId(0x04001003, "overdraft_limit", F.MONEY, writable=True)
CREDIT_CEILING: Final = DataId(0x04001004, "credit_ceiling", F.MONEY, writable=True)  # 囤积
CLOSE_PERMIT_LIMIT: Final = DataId(0x04001005, "close_permit_limit", F.MONEY, writable=True)

ALL: Final[tuple[DataId[Any], ...]] = (
    COMBINED_ENERGY,
    *COMBINED_ENERGY_RATES,
    COMBINED_ENERGY_BLOCK,
    POSITIVE_ENERGY,
    *POSITIVE_ENERGY_RATES,
    POSITIVE_ENERGY_BLOCK,
    REMAINING_AMOUNT,
    OVERDRAFT_AMOUNT,
    CURRENT_PRICE,
    PURCHASE_COUNT,
    DATE,
    TIME,
    DATE_TIME,
    METER_ADDRESS,
    METER_NUMBER,
    *STATUS_WORDS,
    STATUS_BLOCK,
    ALARM_AMOUNT_1,
    ALARM_AMOUNT_2,
    OVERDRAFT_LIMIT,
    CREDIT_CEILING,
    CLOSE_PERMIT_LIMIT,
)
BY_CODE: Final[dict[int, DataId[Any]]] = {d.code: d for d in ALL}
BY_NAME: Final[dict[str, DataId[Any]]] = {d.name: d for d in ALL}


def lookup(code: int) -> DataId[Any] | None:
    return BY_CODE.get(code)


# --------------------------------------------------------------------------- status word bits


class Status1:
    """Bits of status word 1 (电表运行状态字1)."""

    DEMAND_MODE = 1 << 1  # 需量积算方式: 1 = block
    CLOCK_BATTERY_LOW = 1 << 2  # 时钟电池欠压
    READING_BATTERY_LOW = 1 << 3  # 停电抄表电池欠压
    ACTIVE_REVERSE = 1 << 4  # 有功功率方向反向
    REACTIVE_REVERSE = 1 << 5  # 无功功率方向反向
    CONTROL_LOOP_ERROR = 1 << 8  # 控制回路错误
    ESAM_ERROR = 1 << 9  # ESAM 错误
    PROGRAM_ERROR = 1 << 12  # 内部程序错误
    MEMORY_ERROR = 1 << 13  # 存储器故障或损坏
    OVERDRAFT = 1 << 14  # 透支状态
    CLOCK_ERROR = 1 << 15  # 时钟故障


class Status3:
    """Bits of status word 3 (电表运行状态字3): the relay and the prepayment state."""

    SECOND_PERIOD_SET = 1 << 0  # 当前运行时段: second set
    POWER_SUPPLY = 0b11 << 1  # 供电方式: 00 mains, 01 auxiliary, 10 battery
    PROGRAMMING = 1 << 3  # 编程允许
    RELAY_OPEN = 1 << 4  # 继电器状态: 0 closed (通), 1 open (断)
    SECOND_ZONE_SET = 1 << 5  # 当前运行时区: second set
    RELAY_COMMAND_OPEN = 1 << 6  # 继电器命令状态: 0 close, 1 trip
    PRE_TRIP_ALARM = 1 << 7  # 预跳闸报警状态
    METER_TYPE = 0b11 << 8  # 电能表类型: 00 not prepaid, 01 energy, 10 money prepaid
    ENERGY_PREPAID = 0b01 << 8
    MONEY_PREPAID = 0b10 << 8
    SECOND_PRICE_SET = 1 << 10  # 当前运行分时费率: second set
    SECOND_STEP_SET = 1 << 11  # 当前阶梯: second set
    KEEP_POWER = 1 << 12  # 保电状态


def relay_closed(status3: int) -> bool:
    """Whether the relay is closed (power on) according to status word 3."""
    return not status3 & Status3.RELAY_OPEN
