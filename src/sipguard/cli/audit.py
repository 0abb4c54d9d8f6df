"""`sipguard audit verify [--head HEX]` and `sipguard audit export [--since ISO] [--until ISO]
[--pseudonymize]`: check the decisions' hash chain, export it (CONTRACT §2).

Both read one snapshot of the store, a page of rows at a time, so they run beside `serve`
and on any number of rows. How the chain is made: `sipguard.store.chain`; what it proves:
README "Audit".
"""

from __future__ import annotations

import argparse
import json
import sys

from sipguard.cli import add_config_option
from sipguard.config import load_config
from sipguard.errors import UsageError
from sipguard.log import Pseudonymizer, load_pseudonym_key
from sipguard.store.audit import export, verify
from sipguard.store.codec import parse_user_time, time_text
from sipguard.store.session import open_store, run

HEAD_BYTES = 32


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="check or export the tamper-evident decisions")
    add_config_option(audit)
    sub = audit.add_subparsers(dest="audit_command", required=True)
    verify_cmd = sub.add_parser(
        "verify", help="walk the decisions' hash chain; print the result as JSON (exit 1: broken)"
    )
    verify_cmd.add_argument("--head", help="a head from an audit.checkpoint line: it must be "
                                           "in the chain")
    add_config_option(verify_cmd)
    verify_cmd.set_defaults(func=cmd_verify)
    export_cmd = sub.add_parser(
        "export", help="the decisions as JSON lines, oldest first, then a verified summary"
    )
    export_cmd.add_argument("--since", help="from the first decision at or after this time")
    export_cmd.add_argument("--until", help="up to the first decision at or after this time")
    export_cmd.add_argument("--pseudonymize", action="store_true",
                            help="numbers as the log's keyed pseudonyms; no salts or trail "
                                 "details")
    add_config_option(export_cmd)
    export_cmd.set_defaults(func=cmd_export)


def cmd_verify(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    head = _head(args.head) if args.head else None

    async def walk() -> dict[str, object]:
        async with open_store(config) as store:
            return (await verify(store, head)).report()

    report = run(walk())
    print(json.dumps(report))
    if not report["ok"]:
        print(f"error: the decision chain is broken: {report['detail']}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since = time_text(parse_user_time("--since", args.since)) if args.since else None
    until = time_text(parse_user_time("--until", args.until)) if args.until else None
    # the log's key, so that an exported pseudonym matches the decision log's lines
    pseudonymize = Pseudonymizer(load_pseudonym_key(config)) if args.pseudonymize else None

    async def write() -> bool:
        line: dict[str, object] = {}
        async with open_store(config) as store:
            async for line in export(store, since, until, pseudonymize):
                sys.stdout.write(json.dumps(line) + "\n")
        return bool(line.get("ok"))  # the last line: the summary

    if not run(write()):
        print("error: the exported decisions' chain is broken (see the last line)",
              file=sys.stderr)
        return 1
    return 0


def _head(text: str) -> bytes:
    try:
        head = bytes.fromhex(text)
    except ValueError:
        head = b""
    if len(head) != HEAD_BYTES:
        raise UsageError(f"--head: {text!r} is not a chain head ({2 * HEAD_BYTES} hex digits)")
    return head
