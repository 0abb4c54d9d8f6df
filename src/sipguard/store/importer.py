"""Parsing list files into a bitmap of E.164 numbers, fast.

Formats:

* `federal`: the US National DNC Registry download, one 10-digit number a line, or the
  `areacode,number` two-column variant;
* `e164`: one `+` number a line;
* `csv`: a header row naming the number column (phone, number, telephone, ...); each
  value goes through the same normalisation as a dialled number (`normalize_number`).
  A date column (disconnected_at, opted_out_at, date, ...) makes dated rows single
  entries carrying that time: a reassigned number's disconnection, an opt-out's date;
* `blocks`: NANP number blocks for a `wireless` list, one a line: a thousands-block
  NPA-NXX-X (7 digits: `212555-1`, `212-555-1`, `2125551`) or a ten-thousands-block
  NPA-NXX (6 digits: `212-555`, `212555`). Keys are the blocks' E.164 digit prefixes
  (`sipguard.store.codec`). Auto-detected when every line of the file's first 64 KiB is
  one.

Speed comes from doing per-line work in C: a block of the file is split with
`bytes.split`, converted with `map(int, ...)`, range-checked with `min`/`max`, sorted and
put into a `BitMap64` in one call. Only a block that fails those checks is walked line by
line, which is also where bad lines get their numbers. Per-block bitmaps are merged
pairwise at the end. Measured on 2M random-order numbers: inserting unsorted into the
bitmap costs ~2x more than sorting first (random inserts miss the cache on every
container), and `update()` beats the constructor.

The fast paths check syntax (10 digits with a 2-9 area code; E.164's '+' and 7-15 digits),
not whether a number is assigned: a listed number that no dialled number can normalise to
is never asked about, so it only costs its bit.
"""

from __future__ import annotations

import csv
import io
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pyroaring import BitMap64

from sipguard.errors import UsageError
from sipguard.policy.numbers import Numbers
from sipguard.store.codec import number_key

Format = Literal["auto", "federal", "csv", "e164", "blocks"]
FORMATS: tuple[Format, ...] = ("auto", "federal", "csv", "e164", "blocks")
Progress = Callable[[int, int], None]  # (bytes done, bytes total)

BLOCK_BYTES = 4 << 20  # ~380k federal lines: the bitmap-build sweet spot measured
MAX_REPORTED = 10
NANP_LOW, NANP_HIGH = 2_000_000_000, 9_999_999_999  # NPA starts with 2-9 (NANP plan)
NANP_CC = 10_000_000_000  # "+1" in front of ten digits, as a key offset
E164_LOW, E164_HIGH = 1_000_000, 10**15 - 1  # 7 to 15 digits
NUMBER_COLUMNS = (
    "phone", "phone_number", "phonenumber", "number", "telephone", "telephone_number",
    "tel", "msisdn", "mobile", "cell", "e164", "dnc_number", "contact_number",
)
DATE_COLUMNS = (
    "disconnected_at", "disconnect_date", "disconnected", "opted_out_at", "opt_out_date",
    "listed_at", "date",
)
_FEDERAL_LINE = re.compile(rb"(?:(\d{3})\s*,\s*(\d{7})|(\d{10}))")
# NPA-NXX[-X]: dashes optional; the NPA starts with 2-9 like a federal line's
_BLOCK_LINE = re.compile(rb"([2-9]\d\d)-?(\d{3})(?:-?(\d))?")
BLOCK_LOW, BLOCK_HIGH = 200_000, 9_999_999  # NPANXX (6 digits) .. NPANXXX (7 digits)
BLOCK_7 = 1_000_000  # 7 digits (NPANXXX, a thousands-block) from here on
BLOCK_KEY_6, BLOCK_KEY_7 = NANP_CC // 10_000, NANP_CC // 1000  # the '1' of '+1' in front
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    text: str
    why: str


@dataclass(slots=True)
class ParseReport:
    format: str
    numbers: BitMap64 = field(default_factory=BitMap64)
    good: int = 0  # lines that gave a number (duplicates included)
    bad: int = 0
    first_bad: list[BadLine] = field(default_factory=list)
    # CSV rows with a date column (opt-out / disconnection time): kept as single entries,
    # because a bitmap cannot hold a time per number.
    dated: list[tuple[str, datetime]] = field(default_factory=list)

    def reject(self, line: int, text: bytes | str, why: str) -> None:
        self.bad += 1
        if len(self.first_bad) < MAX_REPORTED:
            shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            self.first_bad.append(BadLine(line, shown.strip()[:60], why))


@lru_cache(maxsize=4)
def _numbers(region: str) -> Callable[[str], str | None]:
    return Numbers(region).e164


def normalize_number(text: str, region: str) -> str | None:
    """E.164 for a number as a person wrote it, or None. The one switch point: the same
    normalisation the gate applies to dialled numbers (`sipguard.policy.numbers`)."""
    return _numbers(region)(text)


def detect_format(path: Path) -> Format:
    """Guess the format from the first non-blank line."""
    with _open(path) as fh:
        head = fh.read(1 << 16)
    first = next((ln.strip() for ln in head.removeprefix(_BOM).splitlines() if ln.strip()), b"")
    if re.search(rb"[A-Za-z]", first):
        return "csv"
    if first.startswith(b"+"):
        return "e164"
    if _FEDERAL_LINE.fullmatch(first):
        return "federal"
    if _BLOCK_LINE.fullmatch(first):
        if len(head) == 1 << 16:  # a cut last line is not a line of the file
            head = head[: head.rfind(b"\n") + 1]
        lines = [ln.strip() for ln in head.removeprefix(_BOM).splitlines()]
        other = next((ln for ln in lines if ln and not _BLOCK_LINE.fullmatch(ln)), None)
        if other is None:
            return "blocks"
        raise UsageError(
            f"{str(path)!r} starts with a number block ({first[:40]!r}) but also has other "
            f"lines ({other[:40]!r}); give --format blocks to import the blocks and list "
            "the rest as bad lines"
        )
    raise UsageError(
        f"cannot tell the format of {str(path)!r} from its first line {first[:40]!r}; "
        "give --format federal, csv, e164 or blocks"
    )


def parse_file(
    path: str | Path, fmt: Format = "auto", region: str = "US", progress: Progress | None = None
) -> ParseReport:
    """Read a list file into a bitmap of E.164 keys, counting and sampling bad lines."""
    file = Path(path)
    chosen = detect_format(file) if fmt == "auto" else fmt
    if chosen == "csv":
        return _parse_csv(file, region, progress)
    report = ParseReport(chosen)
    block_fn = {"federal": _federal_block, "blocks": _nanp_blocks}.get(chosen, _e164_block)
    parts: list[BitMap64] = []
    for line_no, block, done, total in _blocks(file):
        parts.append(block_fn(block, line_no, report))
        if progress is not None:
            progress(done, total)
    numbers = _union(parts)
    report.numbers = numbers.shift(NANP_CC) if chosen == "federal" and numbers else numbers
    return report


def _open(path: Path) -> io.BufferedReader:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{str(path)!r} is a directory, not a list file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None


def _blocks(path: Path) -> Iterator[tuple[int, bytes, int, int]]:
    """(number of the block's first line, block of whole lines, bytes done, total)."""
    with _open(path) as fh:
        total = path.stat().st_size
        carry, line_no, done = b"", 1, 0
        while True:
            data = fh.read(BLOCK_BYTES)
            done += len(data)
            if not data:
                if carry:
                    yield line_no, carry, done, total
                return
            if line_no == 1:
                data = data.removeprefix(_BOM)
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
            yield line_no, block, done, total
            line_no += block.count(b"\n")


def _union(parts: list[BitMap64]) -> BitMap64:
    """Merge pairwise: each merge is linear, so the whole is n log(parts)."""
    while len(parts) > 1:
        parts = [
            parts[i] | parts[i + 1] if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0] if parts else BitMap64()


def _bitmap(keys: list[int]) -> BitMap64:
    """A bitmap of `keys` (sorted in place first: see the module docstring)."""
    keys.sort()
    bitmap = BitMap64()
    bitmap.update(keys)
    return bitmap


def _fast_ints(block: bytes, forbidden: tuple[bytes, ...]) -> list[int] | None:
    """The block's numbers if every non-blank line is a single plain integer token."""
    if any(f in block for f in forbidden):
        return None
    tokens = block.split()
    if len(tokens) > block.count(b"\n") + 1:  # more tokens than lines
        return None
    try:
        return list(map(int, tokens))
    except ValueError:
        return None


def _federal_block(block: bytes, first_line: int, report: ParseReport) -> BitMap64:
    commas = block.count(b",")
    data = block.replace(b",", b"") if commas else block
    ints = _fast_ints(data, (b" ", b"\t", b"_", b"+", b"-"))
    if ints and min(ints) >= NANP_LOW and max(ints) <= NANP_HIGH and commas in (0, len(ints)):
        report.good += len(ints)
        return _bitmap(ints)
    return _line_by_line(block, first_line, report, _federal_key,
                         "not a 10-digit US number (NPA 2-9)")


def _federal_key(text: bytes) -> int | None:
    match = _FEDERAL_LINE.fullmatch(text)
    digits = (match[1] + match[2] if match[1] else match[3]) if match else b""
    return None if not digits or digits[:1] in b"01" else int(digits)


def _e164_block(block: bytes, first_line: int, report: ParseReport) -> BitMap64:
    ints = _fast_ints(block, (b" ", b"\t", b"_", b"-", b"+0"))
    if (
        ints
        and block.count(b"+") == len(ints)
        and min(ints) >= E164_LOW
        and max(ints) <= E164_HIGH
    ):
        report.good += len(ints)
        return _bitmap(ints)
    return _line_by_line(block, first_line, report, _e164_key,
                         "not an E.164 number ('+' and 7-15 digits)")


def _e164_key(text: bytes) -> int | None:
    key = number_key(text.decode("ascii", "replace"))
    return None if key is None or key < E164_LOW else key


def _block_key(digits: int) -> int:
    """A block's key from its 6 (NPANXX) or 7 (NPANXXX) digits: '1' put in front."""
    return digits + (BLOCK_KEY_7 if digits >= BLOCK_7 else BLOCK_KEY_6)


def _nanp_blocks(block: bytes, first_line: int, report: ParseReport) -> BitMap64:
    ints = _fast_ints(block, (b" ", b"\t", b"_", b"+", b"-", b",", b"\r0", b"\n0"))
    if ints and not block.startswith(b"0"):  # no leading 0: the int has the line's digits
        ints.sort()
        # 6 digits are below BLOCK_7; 7 digits must not start with 1 (NPA 2-9)
        seven = bisect_left(ints, BLOCK_7)
        if ints[0] >= BLOCK_LOW and ints[-1] <= BLOCK_HIGH and (
            seven == len(ints) or ints[seven] >= 2 * BLOCK_7
        ):
            report.good += len(ints)
            keys = [i + BLOCK_KEY_6 for i in ints[:seven]]
            keys += [i + BLOCK_KEY_7 for i in ints[seven:]]
            return _bitmap(keys)
    return _line_by_line(block, first_line, report, _block_line_key,
                         "not a NANP block (NPA-NXX-X or NPA-NXX, NPA 2-9)")


def _block_line_key(text: bytes) -> int | None:
    match = _BLOCK_LINE.fullmatch(text)
    return None if match is None else _block_key(int(match[1] + match[2] + (match[3] or b"")))


def _line_by_line(
    block: bytes, first_line: int, report: ParseReport,
    key_of: Callable[[bytes], int | None], problem: str,
) -> BitMap64:
    """The slow path of every format: line by line, each bad line reported with its number."""
    keys = []
    for offset, raw in enumerate(block.split(b"\n")):
        text = raw.strip()
        if not text:
            continue
        key = key_of(text)
        if key is None:
            report.reject(first_line + offset, raw, problem)
            continue
        keys.append(key)
    report.good += len(keys)
    return _bitmap(keys)


def _number_column(header: list[str]) -> int:
    names = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header]
    for wanted in NUMBER_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    for i, name in enumerate(names):
        if "phone" in name or "number" in name or name.startswith("tel"):
            return i
    raise UsageError(
        "the CSV header names no phone number column (looked for "
        f"{', '.join(NUMBER_COLUMNS[:5])}, ...); it has: {', '.join(header) or 'nothing'}"
    )


def _date_column(header: list[str]) -> int | None:
    names = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header]
    for wanted in DATE_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    return None


def _parse_date(text: str) -> datetime | None:
    """ISO-8601, or the US carriers' MM/DD/YYYY; naive means UTC."""
    text = text.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = datetime.strptime(text, "%m/%d/%Y")
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_csv(path: Path, region: str, progress: Progress | None) -> ParseReport:
    report = ParseReport("csv")
    normalize = _numbers(region)
    total = path.stat().st_size if path.exists() else 0
    keys: list[int] = []
    parts: list[BitMap64] = []
    with _open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace",
                                             newline="") as text:
        reader = csv.reader(text)
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            return report
        column, date_column = _number_column(header), _date_column(header)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            value = row[column] if column < len(row) else ""
            e164 = normalize(value) if value.strip() else None
            key = number_key(e164) if e164 else None
            if key is None or e164 is None:
                why = "no number in the number column" if not value.strip() else (
                    "not a valid phone number"
                )
                report.reject(reader.line_num, ",".join(row), why)
                continue
            when = row[date_column] if date_column is not None and date_column < len(row) else ""
            if when.strip():
                date = _parse_date(when)
                if date is None:
                    report.reject(reader.line_num, ",".join(row), f"bad date {when.strip()!r}")
                    continue
                report.dated.append((e164, date))
                report.good += 1
                continue
            keys.append(key)
            if len(keys) >= 262_144:
                parts.append(_bitmap(keys))
                report.good += len(keys)
                keys = []
                if progress is not None:
                    progress(raw.tell(), total)
    parts.append(_bitmap(keys))
    report.good += len(keys)
    report.numbers = _union(parts)
    if progress is not None:
        progress(total, total)
    return report
