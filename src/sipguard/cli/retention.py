"""`sipguard retention purge [--dry-run]`: apply the retention policy now (CONTRACT §2).

Safe while `serve` runs on the same store: deletes go a batch per short transaction, and
SQLite's WAL and busy timeout let the server's record writer and this command take turns.
When consents went, the purge logs a `consents-of` change per number and a running server
is told at once (the control socket): it reads those numbers' consents again, and the
ended ones leave its memory too.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from sipguard.cli import add_config_option
from sipguard.config import load_config
from sipguard.store.retention import PurgeResult, purge
from sipguard.store.session import open_store, run, tell_server


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retention = subparsers.add_parser("retention", help="apply the retention policy")
    add_config_option(retention)
    sub = retention.add_subparsers(dest="retention_command", required=True)
    purge_cmd = sub.add_parser(
        "purge", help="delete what [retention] says is no longer kept; print counts as JSON"
    )
    purge_cmd.add_argument("--dry-run", action="store_true",
                           help="count what would be deleted, delete nothing")
    add_config_option(purge_cmd)
    purge_cmd.set_defaults(func=cmd_purge)


def cmd_purge(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def apply() -> PurgeResult:
        async with open_store(config) as store:
            result = await purge(store, config, datetime.now(UTC), dry_run=args.dry_run)
        if result.consents and not result.dry_run:
            await tell_server(config)
        return result

    print(json.dumps(run(apply()).as_json()))
    return 0
