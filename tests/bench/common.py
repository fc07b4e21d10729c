"""Helpers shared by the benchmarks: JSON-line output, percentiles, peak memory of child
processes and a deterministic generator of a large customer CSV file.

Every benchmark writes its figures to stdout as JSON lines (one object per line) and anything
meant for a person (progress) to stderr, so ``python -m tests.bench.run > figures.jsonl`` keeps
only the figures.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import operator
import resource
import sys
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import fields
from pathlib import Path
from typing import Any

from app.services.customers.importing import COLUMNS
from tests.rigs import env as rigs_env

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = ROOT / "bench-data"  # git-ignored
FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000

HEADER = COLUMNS  # the columns of an import file, in the order the bench writes them
FIRST_CUSTOMER_NO = 500_000_000_000
FIRST_METER_NO = 600_000_000_000
PLANS = ("RES-FLAT", "RES-TOU", "RES-TIER")
OFFICE = "DEMO"
# bump when the generated rows change, so that an old CSV file is not reused
GENERATOR_VERSION = 1
_SEED = b"cardvend-bench-customers"


# --------------------------------------------------------------------------- output


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Print one benchmark record as a single JSON line on stdout and flush it."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
    sys.stdout.flush()
    return record


def bench_main(
    doc: str | None,
    run: Callable[..., object],
    argv: list[str] | None,
    *,
    helps: Mapping[str, str] | None = None,
    **defaults: Any,
) -> int:
    """A benchmark's command line: ``--name`` for each keyword of ``run`` given in ``defaults``
    (typed as its default, with its text in ``helps`` if any), the first paragraph of the
    module's ``doc`` as its description; then ``run`` with what was given."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    for name, default in defaults.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            help=(helps or {}).get(name),
        )
    run(**vars(parser.parse_args(argv)))
    return 0


def progress(message: str) -> None:
    """A line for the person watching (stderr, so stdout stays JSON lines only)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError("p must be from 0 to 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits)


# --------------------------------------------------------------------------- memory


def maxrss_to_mb(ru_maxrss: int) -> float:
    """ru_maxrss is in KiB on Linux and in bytes on macOS; return MiB."""
    if sys.platform == "darwin":
        return ru_maxrss / (1024 * 1024)
    return ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """Peak RSS of the largest child process waited for so far (RUSAGE_CHILDREN), in MiB.

    This is the maximum over *all* terminated children, not the last one; to measure one
    process alone, have the process report its own RUSAGE_SELF (see :data:`RUSAGE_LAUNCHER`).
    """
    return maxrss_to_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


# Runs main.main(argv) in this very process and, at exit, writes its own resource usage to the
# file named by the first argument: ``python -c RUSAGE_LAUNCHER OUT.json ARGS...`` is the
# process ``python main.py ARGS...`` with its peak RSS measured alone.  On Linux the peak is
# VmHWM (the high-water mark of this program's own memory): ru_maxrss keeps the peak of the
# process image before exec too, so a child of a large parent (``make bench`` runs every bench
# in one process) would report the parent's size.
RUSAGE_LAUNCHER = """\
import json, resource, sys
out = sys.argv[1]
sys.argv = ["main.py", *sys.argv[2:]]
rc = 1
try:
    import main
    rc = main.main(sys.argv[1:])
finally:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak = ru.ru_maxrss
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])  # kB, as ru_maxrss on Linux
    except OSError:
        pass
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"ru_maxrss": peak, "ru_utime": ru.ru_utime, "ru_stime": ru.ru_stime,
                   "platform": sys.platform}, f)
sys.exit(rc)
"""


def child_env(home: Path) -> dict[str, str]:
    """The environment for a CardVend child process: this one without any CARDVEND_* variable
    (a CARDVEND_DB pointing at a real database must never receive benchmark data), plus
    CARDVEND_HOME and English messages."""
    return rigs_env.child_env(
        CARDVEND_HOME=str(home), CARDVEND_LANG="en", PYTHONDONTWRITEBYTECODE="1"
    )


# --------------------------------------------------------------------------- customer data

# common surnames with rough relative frequencies (per mille of the population)
_SURNAMES: tuple[tuple[str, int], ...] = (
    ("王", 72),
    ("李", 71),
    ("张", 68),
    ("刘", 54),
    ("陈", 45),
    ("杨", 31),
    ("黄", 23),
    ("赵", 20),
    ("吴", 20),
    ("周", 19),
    ("徐", 16),
    ("孙", 15),
    ("马", 14),
    ("朱", 13),
    ("胡", 13),
    ("郭", 12),
    ("何", 12),
    ("林", 10),
    ("高", 10),
    ("罗", 10),
    ("郑", 9),
    ("梁", 9),
    ("谢", 8),
    ("宋", 7),
    ("唐", 7),
    ("许", 7),
    ("韩", 7),
    ("冯", 7),
    ("邓", 7),
    ("曹", 6),
    ("彭", 6),
    ("曾", 6),
    ("肖", 6),
    ("田", 5),
    ("董", 5),
    ("袁", 5),
    ("潘", 5),
    ("于", 5),
    ("蒋", 5),
    ("蔡", 5),
    ("余", 5),
    ("杜", 5),
    ("叶", 4),
    ("程", 4),
    ("苏", 4),
    ("魏", 4),
    ("吕", 4),
    ("丁", 4),
    ("任", 4),
    ("沈", 4),
    ("姚", 3),
    ("卢", 3),
    ("姜", 3),
    ("崔", 3),
    ("钟", 3),
    ("谭", 3),
    ("陆", 3),
    ("汪", 3),
    ("范", 3),
    ("金", 3),
    ("石", 3),
    ("廖", 3),
    ("贾", 3),
    ("夏", 3),
    ("韦", 3),
    ("付", 3),
    ("方", 2),
    ("白", 2),
    ("邹", 2),
    ("孟", 2),
    ("熊", 2),
    ("秦", 2),
    ("邱", 2),
    ("江", 2),
    ("尹", 2),
    ("薛", 2),
    ("闫", 2),
    ("段", 2),
    ("雷", 2),
    ("侯", 2),
    ("龙", 2),
    ("史", 2),
    ("陶", 2),
    ("黎", 2),
    ("贺", 2),
    ("顾", 2),
    ("毛", 2),
    ("郝", 2),
    ("龚", 2),
    ("邵", 2),
    ("万", 2),
    ("钱", 2),
    ("严", 2),
    ("覃", 1),
    ("武", 1),
    ("戴", 1),
    ("莫", 1),
    ("孔", 1),
    ("向", 1),
    ("汤", 1),
    ("欧阳", 1),
    ("司马", 1),
    ("诸葛", 1),
    ("上官", 1),
)
_SURNAME_TOTAL = sum(w for _, w in _SURNAMES)
_SURNAME_TABLE: tuple[str, ...] = tuple(s for s, w in _SURNAMES for _ in range(w))
_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国红玉梅志文斌辉鹏宇浩俊海波晨"
    "婷雪琳倩颖佳慧欣怡子涵梓轩浩然思远雨萱博文嘉怡一诺晓东春燕金凤德胜永福淑珍玉兰桂芳"
    "秀珍凤英荣华德明振华立新建平小红丹丹亮飞鑫磊彬凯旭阳帆航瑶琪璐琦蕾薇琴云莉萍娇宁"
)
_PROVINCES = (
    ("浙江省", ("杭州市", "宁波市", "温州市", "绍兴市")),
    ("江苏省", ("南京市", "苏州市", "无锡市", "常州市")),
    ("广东省", ("广州市", "深圳市", "佛山市", "东莞市")),
    ("山东省", ("济南市", "青岛市", "烟台市", "潍坊市")),
    ("河南省", ("郑州市", "洛阳市", "新乡市", "南阳市")),
    ("四川省", ("成都市", "绵阳市", "德阳市", "宜宾市")),
    ("湖北省", ("武汉市", "宜昌市", "襄阳市", "荆州市")),
    ("湖南省", ("长沙市", "株洲市", "湘潭市", "衡阳市")),
    ("河北省", ("石家庄市", "保定市", "唐山市", "邯郸市")),
    ("安徽省", ("合肥市", "芜湖市", "蚌埠市", "安庆市")),
)
_DISTRICTS = (
    "城关区",
    "新城区",
    "高新区",
    "经济开发区",
    "东湖区",
    "西山区",
    "南岸区",
    "北湖区",
    "滨江区",
    "长安区",
    "开元区",
    "江北区",
)
_STREETS = (
    "人民路",
    "解放路",
    "建设路",
    "和平路",
    "胜利街",
    "中山路",
    "光明街",
    "新华路",
    "青年路",
    "文化路",
    "长江路",
    "黄河路",
    "朝阳路",
    "幸福路",
    "友谊路",
    "工业大道",
    "东风路",
    "跃进路",
    "育才路",
    "花园街",
    "学府路",
    "滨河路",
    "环城西路",
    "振兴大街",
)
_COMMUNITIES = ("阳光", "锦绣", "翠苑", "金色", "丽景", "和谐", "康乐", "绿城", "华府", "香樟")
_TOWNS = ("桥头镇", "新塘镇", "石门镇", "龙泉镇", "清水镇", "白沙镇", "马鞍镇", "双河镇")
_VILLAGES = ("东村", "西村", "前进村", "红星村", "胜利村", "团结村", "杨柳村", "三合村")
# phone = 13 + a 9-digit number that is an affine permutation of i modulo 10**9 (3**18 is
# coprime to 10), so the phones of the first 10**9 customers are all different
_PHONE_MUL = 387_420_489
_PHONE_ADD = 123_456_789


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer_no: str
    name: str
    address: str
    phone: str
    meter_no: str
    meter_kind: str
    tariff_plan: str
    office: str
    ct_ratio: str
    pt_ratio: str

    def as_tuple(self) -> tuple[str, ...]:
        """The row's values in field order (the order of ``HEADER``)."""
        return _row_values(self)


_row_values = operator.attrgetter(*(f.name for f in fields(CustomerRow)))


def customer_row(i: int) -> CustomerRow:
    """The i-th generated customer (0-based), a pure function of i: any row can be recomputed
    (the find benchmark uses this to query values that exist without reading the file)."""
    r = int.from_bytes(
        hashlib.blake2b(i.to_bytes(8, "little"), digest_size=24, key=_SEED).digest(), "little"
    )

    def draw(n: int) -> int:
        nonlocal r
        r, v = divmod(r, n)
        return v

    name = _SURNAME_TABLE[draw(_SURNAME_TOTAL)] + _GIVEN[draw(len(_GIVEN))]
    if draw(10) < 7:  # most given names have two characters
        name += _GIVEN[draw(len(_GIVEN))]
    province, cities = _PROVINCES[draw(len(_PROVINCES))]
    city = cities[draw(len(cities))]
    district = _DISTRICTS[draw(len(_DISTRICTS))]
    if draw(100) < 80:  # a flat in town
        address = (
            f"{province}{city}{district}{_STREETS[draw(len(_STREETS))]}"
            f"{draw(300) + 1}号{_COMMUNITIES[draw(len(_COMMUNITIES))]}小区"
            f"{draw(30) + 1}栋{draw(4) + 1}单元{draw(18) + 1}{draw(4) + 1:02d}室"
        )
    else:  # a house in a village
        address = (
            f"{province}{city}{district}{_TOWNS[draw(len(_TOWNS))]}"
            f"{_VILLAGES[draw(len(_VILLAGES))]}{draw(12) + 1}组{draw(80) + 1}号"
        )
    phone = f"13{(i * _PHONE_MUL + _PHONE_ADD) % 1_000_000_000:09d}"
    return CustomerRow(
        customer_no=str(FIRST_CUSTOMER_NO + i),
        name=name,
        address=address,
        phone=phone,
        meter_no=str(FIRST_METER_NO + i),
        meter_kind="remote" if i % 10 == 9 else "card",
        tariff_plan=PLANS[i % len(PLANS)],
        office=OFFICE,
        ct_ratio="1",
        pt_ratio="1",
    )


def customer_rows(count: int) -> Iterator[tuple[str, ...]]:
    for i in range(count):
        yield customer_row(i).as_tuple()


def write_customers_csv(path: Path, count: int) -> int:
    """Stream ``count`` generated customers to ``path`` (UTF-8, header row, ``\\n`` line ends)
    through a temporary file renamed at the end; returns the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(customer_rows(count))
    part.replace(path)
    return path.stat().st_size


@dataclass(frozen=True)
class CsvFile:
    path: Path
    rows: int
    bytes: int
    generated: bool  # False when an existing file was reused
    seconds: float  # time spent generating (0 when reused)


def ensure_customers_csv(data_dir: Path, count: int) -> CsvFile:
    """The CSV of ``count`` generated customers in ``data_dir``; an existing file is reused when
    its sidecar ``.meta.json`` says it has this many rows from this generator version and the
    file still has the recorded size."""
    path = data_dir / f"customers-{count}.csv"
    meta_path = path.with_name(path.name + ".meta.json")
    want = {"rows": count, "generator_version": GENERATOR_VERSION}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if all(meta.get(k) == v for k, v in want.items()) and path.stat().st_size == meta.get(
            "bytes"
        ):
            return CsvFile(path, count, int(meta["bytes"]), False, 0.0)
    except (OSError, ValueError):
        pass
    progress(f"generating {count:,} customers into {path} ...")
    t0 = time.perf_counter()
    size = write_customers_csv(path, count)
    seconds = time.perf_counter() - t0
    meta_path.write_text(json.dumps({**want, "bytes": size}), encoding="utf-8")
    return CsvFile(path, count, size, True, seconds)


def all_ok(records: Iterable[dict[str, Any]]) -> bool:
    return all(bool(r.get("ok")) for r in records)
