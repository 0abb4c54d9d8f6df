"""Seeded test data for the benchmark: a DNC list and the numbers SIPp dials.

Numbers are valid US numbers (NPA-NXX pairs that `phonenumbers` accepts), drawn
without repetition through an affine permutation of the whole number space:
index i -> (A * i + B) mod S. Indexes [0, N) are the DNC list, indexes >= N are
never on it, so the called-number CSV can say exactly which calls must get 603
without holding the list in memory.

Outputs (into --out):
  dnc-federal.txt   the list, one 10-digit number per line (National DNC Registry format)
  calls.csv         SIPp -inf file (SEQUENTIAL; field0 = number, field1 = 1 if listed)
  kamailio-dnc.db   SQLite table `dnc` in htable's dbtable layout (with --sqlite)
  meta.json         seed, sizes, timings
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SUBSCRIBERS = 10_000


def valid_prefixes() -> list[int]:
    """Six-digit NPA-NXX prefixes that phonenumbers treats as valid US numbers."""
    import phonenumbers  # noqa: PLC0415 (only needed when the prefix cache is cold)

    prefixes: list[int] = []
    for npa in range(200, 1000):
        if not phonenumbers.is_valid_number(phonenumbers.parse(f"+1{npa}2345678")):
            continue
        for nxx in range(200, 1000):
            if nxx == 555 or nxx % 100 == 11:
                continue
            ok = all(
                phonenumbers.is_valid_number(phonenumbers.parse(f"+1{npa}{nxx}{sub}"))
                for sub in ("2345", "8761")
            )
            if ok:
                prefixes.append(npa * 1000 + nxx)
    return prefixes


class NumberSpace:
    def __init__(self, prefixes: list[int], seed: int) -> None:
        self.prefixes = prefixes
        self.size = len(prefixes) * SUBSCRIBERS
        rng = random.Random(seed)
        while True:
            a = rng.randrange(self.size // 3, self.size)
            if math.gcd(a, self.size) == 1:
                break
        self.mul = a
        self.add = rng.randrange(self.size)

    def number(self, index: int) -> str:
        p = (self.mul * index + self.add) % self.size
        q, sub = divmod(p, SUBSCRIBERS)
        return f"{self.prefixes[q]:06d}{sub:04d}"

    def numbers(self, start: int, stop: int) -> Iterator[str]:
        mul, add, size, prefixes = self.mul, self.add, self.size, self.prefixes
        for i in range(start, stop):
            q, sub = divmod((mul * i + add) % size, SUBSCRIBERS)
            yield f"{prefixes[q]:06d}{sub:04d}"


def write_list(space: NumberSpace, count: int, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", buffering=1 << 20) as fh:
        chunk = 200_000
        for start in range(0, count, chunk):
            fh.write("\n".join(space.numbers(start, min(count, start + chunk))))
            fh.write("\n")
    tmp.replace(path)


def write_calls(space: NumberSpace, listed: int, calls: int, hit_ratio: float, seed: int,
                path: Path) -> int:
    rng = random.Random(seed + 1)
    hits = round(calls * hit_ratio)
    flags = [1] * hits + [0] * (calls - hits)
    rng.shuffle(flags)
    lines = ["SEQUENTIAL"]
    fresh = listed  # indexes >= listed are never on the list; walk them without repeats
    for flag in flags:
        if flag:
            lines.append(f"{space.number(rng.randrange(listed))};1")
        else:
            fresh += rng.randrange(1, 1000)
            lines.append(f"{space.number(fresh)};0")
    path.write_text("\n".join(lines) + "\n")
    return hits


def write_sqlite(list_path: Path, db_path: Path) -> None:
    tmp = db_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    con.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
        "CREATE TABLE dnc (id INTEGER PRIMARY KEY, key_name TEXT NOT NULL,"
        " key_type INTEGER NOT NULL DEFAULT 0, value_type INTEGER NOT NULL DEFAULT 1,"
        " key_value TEXT NOT NULL DEFAULT '1', expires INTEGER NOT NULL DEFAULT 0);"
    )
    with list_path.open() as fh:
        con.executemany(
            "INSERT INTO dnc (key_name, key_type, value_type, key_value, expires)"
            " VALUES (?, 0, 1, '1', 0)",
            ((line.rstrip("\n"),) for line in fh),
        )
    con.commit()
    con.close()
    tmp.replace(db_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=10_000_000, help="numbers on the DNC list")
    ap.add_argument("--calls", type=int, default=200_000, help="lines in calls.csv")
    ap.add_argument("--hit-ratio", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=20260401)
    ap.add_argument("--sqlite", action="store_true", help="also build kamailio-dnc.db")
    args = ap.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    want = {"size": args.size, "calls": args.calls, "hit_ratio": args.hit_ratio,
            "seed": args.seed, "version": 1}
    meta: dict[str, object] = {}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} != want:
            meta = {}
    if not meta or not (out / "dnc-federal.txt").exists() or not (out / "calls.csv").exists():
        t0 = time.monotonic()
        cache = out.parent / "us-prefixes.txt"
        if cache.exists():
            prefixes = [int(x) for x in cache.read_text().split()]
        else:
            prefixes = valid_prefixes()
            cache.write_text("\n".join(map(str, prefixes)) + "\n")
        space = NumberSpace(prefixes, args.seed)
        if args.size + args.calls * 1000 >= space.size:
            print("number space too small for this list size", file=sys.stderr)
            return 2
        write_list(space, args.size, out / "dnc-federal.txt")
        hits = write_calls(space, args.size, args.calls, args.hit_ratio, args.seed,
                           out / "calls.csv")
        meta = dict(want, hits=hits, prefixes=len(prefixes), space=space.size,
                    generate_s=round(time.monotonic() - t0, 1))
        meta_path.write_text(json.dumps(meta, indent=1))
        (out / "kamailio-dnc.db").unlink(missing_ok=True)
        print(f"generated {args.size:,} listed numbers, {args.calls:,} calls "
              f"({hits:,} listed) in {meta['generate_s']} s", file=sys.stderr)
    if args.sqlite and not (out / "kamailio-dnc.db").exists():
        t0 = time.monotonic()
        write_sqlite(out / "dnc-federal.txt", out / "kamailio-dnc.db")
        meta["sqlite_s"] = round(time.monotonic() - t0, 1)
        meta_path.write_text(json.dumps(meta, indent=1))
        print(f"built kamailio-dnc.db in {meta['sqlite_s']} s", file=sys.stderr)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
