"""List files: each format, auto detection, bad lines with their line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyroaring import BitMap64

from sipguard.errors import UsageError
from sipguard.store import importer
from sipguard.store.codec import key_number
from sipguard.store.importer import detect_format, parse_file


def numbers(bitmap: BitMap64) -> list[str]:
    return [key_number(k) for k in bitmap]


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_federal_ten_digits(tmp_path: Path) -> None:
    path = write(tmp_path, "f.txt", "2025550100\n3055550101\n2025550100\n")
    assert detect_format(path) == "federal"
    report = parse_file(path)
    assert report.format == "federal" and report.bad == 0 and report.good == 3
    assert numbers(report.numbers) == ["+12025550100", "+13055550101"]


def test_federal_two_column_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "f.txt", b"\xef\xbb\xbf202,5550100\r\n\r\n305,5550101\r\n")
    report = parse_file(path)
    assert report.format == "federal" and report.bad == 0
    assert numbers(report.numbers) == ["+12025550100", "+13055550101"]


def test_federal_bad_lines_are_counted_with_line_numbers(tmp_path: Path) -> None:
    lines = ["2025550100", "12345", "2025550101", "0125550100", "abc", "", "202 555 0102"]
    lines += [f"x{i}" for i in range(12)]
    report = parse_file(write(tmp_path, "f.txt", "\n".join(lines) + "\n"))
    assert report.good == 2 and report.bad == 16
    assert [(b.line, b.text) for b in report.first_bad[:4]] == [
        (2, "12345"), (4, "0125550100"), (5, "abc"), (7, "202 555 0102"),
    ]
    assert len(report.first_bad) == 10


def test_bad_line_numbers_hold_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BLOCK_BYTES", 64)  # many blocks, lines cut at block ends
    lines = [f"20255{i:05d}" for i in range(100)]
    lines[57] = "oops"
    report = parse_file(write(tmp_path, "f.txt", "\n".join(lines)))  # no final newline
    assert report.good == 99 and [(b.line, b.text) for b in report.first_bad] == [(58, "oops")]
    assert len(report.numbers) == 99


def test_e164_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "e.txt", "+12025550100\n+442079460958\n+0123\n12025550100\n+1\n")
    assert detect_format(path) == "e164"
    report = parse_file(path)
    assert numbers(report.numbers) == ["+12025550100", "+442079460958"]
    assert [b.line for b in report.first_bad] == [3, 4, 5]


def test_csv_with_header_naming_the_column(tmp_path: Path) -> None:
    text = (
        "id,Name,Phone Number,opted_out\n"
        '1,"Doe, Jane",(202) 555-0100,2026-01-01\n'
        "2,Bob,+44 20 7946 0958,2026-01-02\n"
        "3,Eve,not a number,2026-01-03\n"
        "4,Al,,2026-01-03\n"
        "5,Zed,1-305-555-0101\n"
    )
    path = write(tmp_path, "c.csv", text)
    assert detect_format(path) == "csv"
    report = parse_file(path)
    assert numbers(report.numbers) == ["+12025550100", "+13055550101", "+442079460958"]
    assert [(b.line, b.why) for b in report.first_bad] == [
        (4, "not a valid phone number"), (5, "no number in the number column"),
    ]


def test_csv_without_a_number_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no phone number column"):
        parse_file(write(tmp_path, "c.csv", "name,city\nJane,Paris\n"))


def test_undetectable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot tell the format"):
        parse_file(write(tmp_path, "x.txt", "12-34\n"))
    with pytest.raises(UsageError, match="does not exist"):
        parse_file(tmp_path / "nope.txt")


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    path = write(tmp_path, "e.txt", "+12025550100\n2025550101\n")
    report = parse_file(path, "federal")
    assert numbers(report.numbers) == ["+12025550101"] and report.bad == 1


def test_progress_reaches_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BLOCK_BYTES", 1000)
    path = write(tmp_path, "f.txt", "".join(f"20255{i:05d}\n" for i in range(1000)))
    seen: list[tuple[int, int]] = []
    parse_file(path, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 5 and seen[-1][0] == seen[-1][1] == path.stat().st_size


def test_csv_date_column_makes_dated_entries(tmp_path: Path) -> None:
    text = (
        "phone,disconnected_at\n"
        "2025550100,2026-02-01\n"
        "2025550101,03/15/2026\n"
        "2025550102,\n"
        "2025550103,someday\n"
    )
    report = parse_file(write(tmp_path, "r.csv", text))
    assert numbers(report.numbers) == ["+12025550102"]  # no date: a plain bulk number
    assert [(n, d.date().isoformat()) for n, d in report.dated] == [
        ("+12025550100", "2026-02-01"), ("+12025550101", "2026-03-15"),
    ]
    assert [(b.line, b.why) for b in report.first_bad] == [(5, "bad date 'someday'")]
