"""List import, start-up load and memory of the store, measured (issue 4 targets).

    .venv/bin/python bench/import_bench.py [--numbers 10000000] [--seed 7] [--big 100000000]

1. writes a seeded National-DNC-format file (random 10-digit US numbers, NPA 200-999);
2. imports it in this process, timing parse (file -> bitmap) and store write separately,
   then once more through the real CLI (`sipguard dnc import`, a subprocess, wall clock);
3. loads the store into an Index in fresh subprocesses, with and without the list,
   reporting load time and the RSS the list adds;
4. measures Index.memberships() lookups per second (half hits, half misses);
5. with --big N: builds an N-number bitmap shaped like a dense registry (every area code,
   one number in `stride`) and reports its in-memory and serialized size, for the
   250M-number design question.

Everything is bounded by --numbers; nothing is left outside --workdir.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyroaring import BitMap64

from sipguard.policy.model import ListKind
from sipguard.store.db import Store
from sipguard.store.importer import parse_file
from sipguard.store.index import Index


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def generate(path: Path, count: int, seed: int, ordered: bool) -> float:
    """Random 10-digit US numbers; `ordered` sorts them, as the FTC's per-area-code
    downloads are (roaring builds ~4x faster from sorted input than from random)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    raw = array.array("Q")
    raw.frombytes(rng.randbytes(8 * count))
    if ordered:
        raw = array.array("Q", sorted(r % 8_000_000_000 for r in raw))
    with path.open("wb") as fh:
        step = 1_000_000
        for i in range(0, count, step):
            part = raw[i : i + step]
            fh.write(b"".join(b"%d\n" % (2_000_000_000 + r % 8_000_000_000) for r in part))
    return time.perf_counter() - started


async def import_in_process(db: Path, file: Path) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    report = parse_file(file)
    parsed = time.perf_counter() - started
    async with await Store.open(db) as store:
        t = time.perf_counter()
        result = await store.write_generation(
            "national", report.numbers, "replace", kind=ListKind.NATIONAL, source=file.name
        )
        written = time.perf_counter() - t
        chunks = await store.generation_chunks(result.list.generation)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "cpu_s": cpu,
        "numbers_per_cpu_s": (report.good + report.bad) / cpu,
        "lines": report.good + report.bad,
        "distinct": len(report.numbers),
        "parse_s": parsed,
        "write_s": written,
        "total_s": total,
        "numbers_per_s": (report.good + report.bad) / total,
        "blob_mb": sum(len(c) for c in chunks) / 1e6,
    }


def import_cli(config: Path, file: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sipguard", "dnc", "import", str(file), "--list", "national",
         "-c", str(config)],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def load_in_child(db: Path) -> dict[str, float]:
    """Load the store in a fresh interpreter (so nothing of the import is in its RSS)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child-load", str(db)],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


async def child_load(db: Path) -> None:
    """Runs in a fresh interpreter; module imports are paid before the RSS baseline."""
    before = rss_mb()
    started = time.perf_counter()
    store = await Store.open(db)
    index = await store.load_index()
    load_s = time.perf_counter() - started
    after = rss_mb()
    rng = random.Random(1)
    listed = [f"+{k}" for k in _sample_keys(store, index, rng)]
    probes = [n for pair in zip(listed, _random_numbers(rng, len(listed)), strict=True)
              for n in pair]
    t = time.perf_counter()
    hits = sum(1 for n in probes if index.memberships(n))
    lookup_s = time.perf_counter() - t
    await store.close()
    print(json.dumps({
        "load_s": load_s, "rss_mb": after - before, "lookups_per_s": len(probes) / lookup_s,
        "hit_ratio": hits / len(probes) if probes else 0.0,
    }))


def _sample_keys(store: object, index: object, rng: random.Random) -> list[int]:
    """About 100k keys of the loaded list (every k-th: BitMap64 indexing is not O(1))."""
    assert isinstance(index, Index)
    state = index._by_name.get("national")
    if state is None or not state.bitmap:
        return []
    step = max(1, len(state.bitmap) // 100_000)
    keys = list(itertools.islice(state.bitmap, 0, None, step))
    rng.shuffle(keys)
    return keys


def _random_numbers(rng: random.Random, count: int) -> list[str]:
    return [f"+1{2_000_000_000 + rng.randrange(8_000_000_000)}" for _ in range(count)]


def big_bitmap(count: int) -> dict[str, float]:
    """A dense registry-like bitmap: every NPA 200-999, one number in `stride`."""
    span = 800 * 10_000_000
    stride = max(1, span // count)
    started = time.perf_counter()
    bitmap = BitMap64()
    for npa in range(200, 1000):
        base = 10_000_000_000 + npa * 10_000_000
        bitmap |= BitMap64(range(base + npa % stride, base + 10_000_000, stride))
    built = time.perf_counter() - started
    bitmap.run_optimize()
    stats = bitmap.get_statistics()
    size = len(bitmap.serialize())
    return {
        "numbers": len(bitmap), "build_s": built, "serialized_mb": size / 1e6,
        "bytes_per_number": size / len(bitmap),
        "array_containers": stats["n_array_containers"],
        "bitset_containers": stats["n_bitset_containers"],
        "run_containers": stats["n_run_containers"],
        "projected_250M_mb": 250_000_000 * size / len(bitmap) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--sorted", action="store_true", help="write the file sorted")
    parser.add_argument("--big", type=int, default=0, help="also size an N-number bitmap")
    parser.add_argument("--child-load", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        asyncio.run(child_load(args.child_load))
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        file = work / "national.txt"
        gen_s = generate(file, args.numbers, args.seed, args.sorted)
        order = "sorted" if args.sorted else "random order"
        print(f"generated {args.numbers:,} lines, {order}, ({file.stat().st_size / 1e6:.0f} MB) "
              f"in {gen_s:.1f} s")
        empty_db, db = work / "empty.db", work / "store.db"
        asyncio.run(_empty(empty_db))
        res = asyncio.run(import_in_process(db, file))
        print(f"import in process: {res['lines']:,} lines -> {res['distinct']:,} numbers; "
              f"parse {res['parse_s']:.2f} s + write {res['write_s']:.2f} s = "
              f"{res['total_s']:.2f} s -> {res['numbers_per_s']:,.0f} numbers/s "
              f"(CPU {res['cpu_s']:.2f} s: {res['numbers_per_cpu_s']:,.0f} numbers/CPU-s); "
              f"bitmap {res['blob_mb']:.1f} MB")
        config = work / "bench.toml"
        config.write_text(f'[store]\npath = "{work / "cli.db"}"\n')
        print(f"import via CLI (subprocess, wall clock): {import_cli(config, file):.2f} s")
        empty = load_in_child(empty_db)
        full = load_in_child(db)
        print(f"start-up load: {full['load_s']:.2f} s with the list "
              f"(empty store {empty['load_s']:.2f} s)")
        print(f"RSS of the loaded list: {full['rss_mb'] - empty['rss_mb']:.1f} MB above an "
              f"empty store")
        print(f"lookups: {full['lookups_per_s']:,.0f} memberships()/s "
              f"(hit ratio {full['hit_ratio']:.2f})")
    if args.big:
        big = big_bitmap(args.big)
        print(f"dense bitmap of {big['numbers']:,}: {big['serialized_mb']:.0f} MB "
              f"({big['bytes_per_number']:.2f} B/number; containers: "
              f"{big['bitset_containers']:.0f} bitset, {big['array_containers']:.0f} array, "
              f"{big['run_containers']:.0f} run); 250M at that density ~ "
              f"{big['projected_250M_mb']:.0f} MB")


async def _empty(db: Path) -> None:
    async with await Store.open(db):
        pass


if __name__ == "__main__":
    main()
