"""`sipguard consent grant | revoke | list`: consent records with their proof (CONTRACT §2).

A revocation never deletes: it fills `revoked_at` and `revoke_source` on the records it
ends, and `consent list` shows the whole history.
"""

from __future__ import annotations

import argparse
import json
import sys

from sipguard.cli import add_config_option, e164_argument
from sipguard.config import load_config
from sipguard.policy.geo import subscriber_address
from sipguard.policy.model import Consent, ConsentType
from sipguard.store.codec import parse_user_time
from sipguard.store.session import open_store, run, tell_server

TYPES = [t.value for t in ConsentType]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consent = subparsers.add_parser("consent", help="record, revoke and show consent")
    add_config_option(consent)
    sub = consent.add_subparsers(dest="consent_command", required=True)

    grant = sub.add_parser("grant", help="record a consent with its proof")
    grant.add_argument("number")
    grant.add_argument("--campaign", required=True, help="campaign name, or '*' for all")
    grant.add_argument("--type", required=True, choices=TYPES, dest="consent_type")
    grant.add_argument("--source", required=True, help="the proof: form id, recording, IP...")
    grant.add_argument("--expires", help="ISO-8601 date or time the consent ends")
    grant.add_argument("--granted-at", help="when it was given (default: now)")
    grant.add_argument("--state", help="the subscriber's known address region, e.g. US-FL "
                       "(its calling window and caps apply too)")
    grant.add_argument("--zone", help="the address's IANA time zone, e.g. America/Chicago")
    add_config_option(grant)
    grant.set_defaults(func=cmd_grant)

    revoke = sub.add_parser("revoke", help="revoke consent (all campaigns when none named)")
    revoke.add_argument("number")
    revoke.add_argument("--campaign", help="only this campaign (and blanket '*' consents)")
    revoke.add_argument("--source", required=True, help="how the revocation came in")
    revoke.add_argument("--at", help="when it was made (default: now)")
    add_config_option(revoke)
    revoke.set_defaults(func=cmd_revoke)

    show = sub.add_parser("list", help="show a number's consent history")
    show.add_argument("number")
    show.add_argument("--json", action="store_true", help="one JSON object per record")
    add_config_option(show)
    show.set_defaults(func=cmd_list)


def cmd_grant(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)
    expires = parse_user_time("--expires", args.expires) if args.expires else None
    granted = parse_user_time("--granted-at", args.granted_at) if args.granted_at else None
    region, zone = subscriber_address(args.state, args.zone, ("--state", "--zone"))
    if args.campaign != "*" and args.campaign not in config.campaigns:
        print(
            f"warning: campaign {args.campaign!r} is not in the config "
            f"(known: {', '.join(sorted(config.campaigns))}); recorded anyway",
            file=sys.stderr,
        )

    async def write() -> Consent:
        async with open_store(config) as store:
            record = await store.grant_consent(
                number, args.campaign, ConsentType(args.consent_type), args.source,
                granted_at=granted, expires_at=expires,
                location_region=region, location_zone=zone,
            )
        await tell_server(config)
        return record

    record = run(write())
    print(f"consent #{record.id} recorded: {_line(record)}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)
    at = parse_user_time("--at", args.at) if args.at else None

    async def write() -> list[Consent]:
        async with open_store(config) as store:
            revoked = await store.revoke_consent(number, args.campaign, args.source, at=at)
        if revoked:
            await tell_server(config)
        return revoked

    revoked = run(write())
    if not revoked:
        scope = f" for campaign {args.campaign!r}" if args.campaign else ""
        print(f"{number} has no active consent{scope}: nothing to revoke")
    for record in revoked:
        print(f"consent #{record.id} revoked: {_line(record)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)

    async def read() -> list[Consent]:
        async with open_store(config) as store:
            return await store.consent_history(number)

    history = run(read())
    if args.json:
        for record in history:
            print(json.dumps(_json(record)))
    elif not history:
        print(f"{number}: no consent on record")
    else:
        for record in history:
            print(f"#{record.id} {_line(record)}")
    return 0


def _line(c: Consent) -> str:
    parts = [
        c.number, f"campaign={c.campaign}", f"type={c.type.value}",
        f"granted={c.granted_at.isoformat()}",
        f"expires={c.expires_at.isoformat() if c.expires_at else '-'}",
        f"source={c.source!r}",
    ]
    if c.location_region or c.location_zone:
        parts.append(f"address={c.location_region or '-'}/{c.location_zone or '-'}")
    if c.revoked_at:
        parts.append(f"revoked={c.revoked_at.isoformat()} by {c.revoke_source!r}")
    return " ".join(parts)


def _json(c: Consent) -> dict[str, object]:
    return {
        "id": c.id, "number": c.number, "campaign": c.campaign, "type": c.type.value,
        "granted_at": c.granted_at.isoformat(),
        "expires_at": c.expires_at.isoformat() if c.expires_at else None,
        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
        "revoke_source": c.revoke_source, "source": c.source,
        "location_region": c.location_region, "location_zone": c.location_zone,
    }
