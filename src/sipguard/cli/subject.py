"""`sipguard subject export | erase | restrict | object NUMBER`: GDPR data-subject rights
(CONTRACT §2; Art. 15/20, 17, 18, 21). What each does to the store: `store/subjects.py`."""

from __future__ import annotations

import argparse
import json

from sipguard.cli import add_config_option, e164_argument
from sipguard.config import load_config
from sipguard.errors import UsageError
from sipguard.policy.model import SubjectRequest, SubjectRight
from sipguard.store import subjects
from sipguard.store.codec import parse_user_time
from sipguard.store.session import open_store, run, tell_server


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subject = subparsers.add_parser("subject", help="GDPR data-subject rights for a number")
    add_config_option(subject)
    sub = subject.add_subparsers(dest="subject_command", required=True)

    export = sub.add_parser("export", help="print everything held about the number, as JSON "
                            "(Art. 15 access, Art. 20 portability)")
    export.add_argument("number")
    add_config_option(export)
    export.set_defaults(func=cmd_export)

    erase = sub.add_parser("erase", help="delete the number's data, keeping only the record "
                           "that stops calls to it (Art. 17); cannot be undone")
    erase.add_argument("number")
    erase.add_argument("--source", required=True, help="how the request came in")
    erase.add_argument("--at", help="when it was made (default: now)")
    erase.add_argument("--yes", action="store_true", help="confirm: the data is deleted")
    add_config_option(erase)
    erase.set_defaults(func=cmd_erase)

    for name, right, undo, what in (
        ("object", SubjectRight.OBJECT, "--withdraw",
         "record an objection to direct marketing: no call to the number (Art. 21)"),
        ("restrict", SubjectRight.RESTRICT, "--lift",
         "restrict processing: no call to the number until lifted (Art. 18)"),
    ):
        one = sub.add_parser(name, help=what)
        one.add_argument("number")
        one.add_argument("--source", required=True, help="how the request came in")
        one.add_argument("--at", help="when it was made (default: now)")
        one.add_argument(undo, dest="undo", action="store_true",
                         help="end it instead (the subject withdrew it, or it was lifted)")
        add_config_option(one)
        one.set_defaults(func=cmd_request, right=right)


def cmd_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)

    async def read() -> dict[str, object]:
        async with open_store(config) as store:
            return await subjects.export(store, number)

    print(json.dumps(run(read()), indent=2))
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)
    at = parse_user_time("--at", args.at) if args.at else None
    if not args.yes:
        raise UsageError(f"erasing {number} deletes its consents, list entries, attempts and "
                         "requests and takes it out of the decision records, which cannot be "
                         "undone: give --yes")

    async def write() -> subjects.Erasure:
        async with open_store(config) as store:
            done = await subjects.erase(store, number, args.source, at=at)
        await tell_server(config)
        return done

    done = run(write())
    print(json.dumps({"erased": number, **done.as_dict()}))
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    number = e164_argument(config, args.number)
    at = parse_user_time("--at", args.at) if args.at else None
    right: SubjectRight = args.right

    async def write() -> list[SubjectRequest]:
        async with open_store(config) as store:
            if args.undo:
                changed = await subjects.lift(store, number, right, args.source, at=at)
            else:
                changed = [await subjects.record(store, number, right, args.source, at=at)]
        if changed:
            await tell_server(config)
        return changed

    changed = run(write())
    if not changed:
        print(f"{number} has no {right.value} request in force: nothing to end")
    for request in changed:
        verb = "ended" if request.lifted_at else "recorded"
        print(f"{right.value} request #{request.id} {verb} for {number} "
              f"({(request.lifted_at or request.at).isoformat()}, "
              f"source {(request.lift_source or request.source)!r})")
    return 0
