"""Rules at the command line: check a file, publish it to every limiter at run time, withdraw it.

python -m ratelimit check rules.toml
python -m ratelimit publish rules.toml --redis redis://127.0.0.1:6379/0
python -m ratelimit withdraw --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import redis.asyncio as aioredis

from ratelimit.config import Rules, RulesError
from ratelimit.redis import publish_rules, withdraw_rules


async def _publish(url: str, text: str | None, source: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        if text is None:
            await withdraw_rules(client)
        else:
            await publish_rules(client, text, source=source)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 2 for an invalid rules file."""
    parser = argparse.ArgumentParser(prog="python -m ratelimit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a rules file and print the rates")
    check.add_argument("file", type=Path)
    publish = commands.add_parser("publish", help="validate a rules file and publish it")
    publish.add_argument("file", type=Path)
    publish.add_argument("--redis", required=True, help="redis:// URL")
    withdraw = commands.add_parser("withdraw", help="go back to each limiter's own rules")
    withdraw.add_argument("--redis", required=True, help="redis:// URL")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            rules = Rules.load(args.file)
            for rule in rules.rules:
                print(f"{rule.name}\t{rule.rate:.1f}/s\tcapacity {rule.capacity}")
        elif args.command == "publish":
            text = args.file.read_text(encoding="utf-8")
            asyncio.run(_publish(args.redis, text, str(args.file)))
        else:
            asyncio.run(_publish(args.redis, None, ""))
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
