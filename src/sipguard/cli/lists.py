"""`sipguard dnc import | add | remove | lists`: do-not-call lists (CONTRACT §2)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from sipguard.cli import add_config_option, e164_argument
from sipguard.config import Config, load_config
from sipguard.errors import SipguardError, UsageError
from sipguard.policy.model import ListKind
from sipguard.store.codec import parse_user_time
from sipguard.store.db import ImportResult, Store
from sipguard.store.importer import FORMATS, ParseReport, parse_file
from sipguard.store.session import open_store, run, tell_server

KINDS = [k.value for k in ListKind]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dnc = subparsers.add_parser("dnc", help="manage do-not-call lists")
    add_config_option(dnc)
    sub = dnc.add_subparsers(dest="dnc_command", required=True)

    imp = sub.add_parser("import", help="bulk-load a list file (atomic)")
    imp.add_argument("file", help="the list file")
    _list_options(imp)
    imp.add_argument("--kind", choices=KINDS, help="list kind (default: the name, if a kind)")
    imp.add_argument("--jurisdiction", help="where the list applies, e.g. US-FL")
    imp.add_argument(
        "--format", default="auto", choices=FORMATS,
        help="federal: 10-digit US numbers (or 'NPA,NXXXXXX'); e164: '+' numbers; csv: a "
        "header naming the number column; blocks: NANP number blocks for a wireless list, "
        "NPA-NXX-X thousands-blocks (212555-1, 212-555-1, 2125551) or NPA-NXX "
        "ten-thousands-blocks (212-555, 212555); auto (default): from the file's first "
        "line (blocks when every line is one)",
    )
    imp.add_argument("--mode", default="replace", choices=["replace", "add", "remove"])
    imp.add_argument("--source", default=None, help="where the file came from")
    imp.add_argument("--refreshed-at", help="when the list was downloaded (default: now)")
    imp.add_argument("--strict", action="store_true", help="import nothing if a line is bad")
    imp.add_argument(
        "--allow-empty", action="store_true", help="let a replace with no numbers empty the list"
    )
    imp.set_defaults(func=cmd_import)

    for op in ("add", "remove"):
        one = sub.add_parser(op, help=f"{op} one number")
        one.add_argument("number")
        _list_options(one)
        one.add_argument("--source", default="cli", help="why (e.g. 'call 2026-05-01 agent 7')")
        one.add_argument("--at", help="when the request was made (default: now)")
        if op == "add":
            one.add_argument("--kind", choices=KINDS, help="kind, when this creates the list")
        one.set_defaults(func=cmd_add if op == "add" else cmd_remove)

    show = sub.add_parser("lists", help="show the lists")
    add_config_option(show)
    show.set_defaults(func=cmd_lists)


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", required=True, dest="list_name", help="list name")
    add_config_option(parser)


# -- import ---------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    refreshed = parse_user_time("--refreshed-at", args.refreshed_at) if args.refreshed_at else None
    if not Path(args.file).is_file():
        raise UsageError(f"file {args.file!r} does not exist or is not a file")
    return run(_import(config, args, refreshed))


async def _import(config: Config, args: argparse.Namespace, refreshed: datetime | None) -> int:
    kind = ListKind.of_list(args.list_name, args.kind)
    async with open_store(config) as store:
        kind_now = await _check_target(store, args.list_name, kind, args.mode)
        started = time.perf_counter()
        progress = _Progress(args.file) if sys.stderr.isatty() else None
        report = parse_file(args.file, args.format, config.policy.default_region, progress)
        if progress:
            progress.done()
        parsed = time.perf_counter() - started
        if report.format == "blocks" and kind_now is not ListKind.WIRELESS:
            raise SipguardError(
                f"{args.file!r} holds number blocks, which only a list of kind 'wireless' "
                f"looks up; list {args.list_name!r} is "
                + (f"of kind {kind_now.value!r}" if kind_now else "new: give --kind wireless")
            )
        _report_bad(report)
        if report.bad and args.strict:
            raise SipguardError(
                f"{report.bad} bad line(s) in {args.file!r} (first: line "
                f"{report.first_bad[0].line}); nothing imported (--strict)"
            )
        empty = not report.numbers and not report.dated
        if empty and args.mode == "replace" and not args.allow_empty:
            raise SipguardError(
                f"{args.file!r} holds no valid number; refusing to empty list "
                f"{args.list_name!r} (give --allow-empty to mean it)"
            )
        result = await store.write_generation(
            args.list_name, report.numbers, args.mode, kind=kind,
            jurisdiction=args.jurisdiction, source=args.source or Path(args.file).name,
            refreshed_at=refreshed,
            dated=report.dated,
        )
    await tell_server(config)
    _report_done(args.file, report, result, parsed, time.perf_counter() - started)
    return 0


async def _check_target(
    store: Store, name: str, kind: ListKind | None, mode: str
) -> ListKind | None:
    """Fail before reading a big file if the write could not happen anyway; the kind the
    list has or will have."""
    info = await store.get_list(name)
    if info is None and (kind is None or mode == "remove"):
        known = ", ".join(i.name for i in await store.lists()) or "none yet"
        hint = "" if mode == "remove" else f"; give --kind ({', '.join(KINDS)}) to create it"
        raise SipguardError(f"unknown list {name!r} (known lists: {known}){hint}")
    if info is not None and kind is not None and info.kind is not kind:
        raise SipguardError(f"list {name!r} is of kind {info.kind.value!r}, not {kind.value!r}")
    return info.kind if info is not None else kind


def _report_bad(report: ParseReport) -> None:
    for bad in report.first_bad:
        print(f"line {bad.line}: {bad.text!r}: {bad.why}", file=sys.stderr)
    if report.bad > len(report.first_bad):
        print(f"... and {report.bad - len(report.first_bad)} more bad lines", file=sys.stderr)


def _report_done(
    file: str, report: ParseReport, result: ImportResult, parsed: float, total: float
) -> None:
    rate = report.good / parsed if parsed > 0 else 0.0
    print(
        f"{result.list.name} ({result.list.kind.value}): {result.after:,} numbers "
        f"(was {result.before:,}; {result.mode} with {result.numbers_in:,} distinct from "
        f"{file}, format {report.format}); {report.good:,} good and {report.bad:,} bad lines; "
        f"parsed in {parsed:.1f} s ({rate:,.0f} numbers/s), done in {total:.1f} s"
    )


class _Progress:
    """A one-line progress bar on stderr (only used on a terminal)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\rreading {self.name} [{bar:<25}] {percent:3d}%")
            sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


# -- single entries -------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    return _single(args, "add")


def cmd_remove(args: argparse.Namespace) -> int:
    return _single(args, "remove")


def _single(args: argparse.Namespace, op: str) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)
    at = parse_user_time("--at", args.at) if args.at else None
    kind = ListKind.of_list(args.list_name, getattr(args, "kind", None))

    async def write() -> None:
        async with open_store(config) as store:
            entry = await store.add_entry(
                args.list_name, number, "add" if op == "add" else "remove",
                source=args.source, at=at, kind=kind,
            )
        await tell_server(config)
        verb = "added to" if op == "add" else "removed from"
        print(f"{number} {verb} {args.list_name} (entry #{entry.id}, {entry.at.isoformat()})")

    run(write())
    return 0


# -- lists ----------------------------------------------------------------------------


def cmd_lists(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def show() -> None:
        async with open_store(config) as store:
            index = await store.load_index()
        rows = [("NAME", "KIND", "JURISDICTION", "NUMBERS", "REFRESHED", "SOURCE")]
        for info in index.lists():
            rows.append((
                info.name, info.kind.value, info.jurisdiction or "-",
                f"{index.list_size(info.name):,}",
                info.refreshed_at.isoformat(timespec="seconds") if info.refreshed_at else "-",
                info.source or "-",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

    run(show())
    return 0
