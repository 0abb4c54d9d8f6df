"""`sipguard serve [-c FILE]`: run the gateway."""

from __future__ import annotations

import argparse
from typing import Any

from sipguard.cli import add_config_option
from sipguard.config import load_config


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("serve", help="run the gateway")
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.app import serve  # noqa: PLC0415  (keeps other commands from loading asyncio edges)

    return serve(load_config(args.config))
