"""The `sipguard` command (CONTRACT §2).

Each sub-command lives in a module of this package that exposes
`register(subparsers) -> None`; the parser it adds sets `func(args) -> int`.
User mistakes raise a SipguardError and print as one sentence, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sipguard.config import Config
from sipguard.errors import ConfigError, PolicyError, SipguardError, UsageError
from sipguard.store.importer import normalize_number


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    # Late: the sub-command modules import `add_config_option` from this package.
    from sipguard.cli import (  # noqa: PLC0415
        audit,
        check,
        config_cmd,
        consent,
        lists,
        retention,
        serve,
        subject,
    )

    parser = _Parser(prog="sipguard", description="A consent-aware SIP gateway.")
    parser.add_argument(
        "-c", "--config", help="config file (default: $SIPGUARD_CONFIG or config/sipguard.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in (serve, check, lists, consent, subject, audit, retention, config_cmd):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except SipguardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sipguard ... | head`: the reader left; say nothing more (and let the interpreter's
        # final flush of stdout go nowhere rather than print a second error).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def e164_argument(config: Config, text: str) -> str:
    """A number given on the command line, as E.164 (one clear error when it is not one)."""
    number = normalize_number(text, config.policy.default_region)
    if number is None:
        raise PolicyError(
            f"{text!r} is not a valid phone number (default region "
            f"{config.policy.default_region})"
        )
    return number


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """`-c FILE` accepted after the sub-command too (`sipguard serve -c FILE`)."""
    parser.add_argument("-c", "--config", default=argparse.SUPPRESS, help="config file")
