"""Follow a workspace's Multifactory feed with a plain NATS client (nats-py only).

    pip install nats-py
    python examples/feed_subscriber.py --workspace mage
    python examples/feed_subscriber.py --url nats://mf.example:4222 --creds mage.creds \
        --workspace mage --type project.partner_invited

Prints one line per event the workspace is concerned by; `--json` prints the whole event.
Copies may arrive twice (at-least-once): this script drops repeats by event id. The format
is described in docs/feeds.md; nothing here imports the Multifactory code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import OrderedDict

import nats


class Seen:
    """The last `size` event ids, to drop repeated copies."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        if event_id in self.ids:
            return False
        self.ids[event_id] = None
        if len(self.ids) > self.size:
            self.ids.popitem(last=False)
        return True


def describe(event: dict, headers: dict[str, str]) -> str:
    data = event.get("data", {})
    about = data.get("project_id") or data.get("member_id") or event.get("aggregate_id")
    members = headers.get("Mf-Members", "")
    return (
        f"{headers.get('Mf-Sequence', '?'):>8}  {event['type']:<30} {about:<34} "
        f"by {event['actor']}  [{headers.get('Mf-Concerns', '')}]"
        + (f"  members: {members}" if members else "")
    )


async def follow(args: argparse.Namespace) -> int:
    options = {"name": f"feed-subscriber-{args.workspace}"}
    if args.creds:
        options["user_credentials"] = args.creds
    client = await nats.connect(args.url, **options)
    subject = f"{args.root}.feed.{args.workspace}.{args.type or '>'}"
    seen, printed, done = Seen(), 0, asyncio.Event()

    async def on_message(msg) -> None:
        nonlocal printed
        headers = msg.headers or {}
        event = json.loads(msg.data)
        if not seen.first_time(headers.get("Mf-Event-Id", event["event_id"])):
            return
        if args.json:
            print(json.dumps({"sequence": int(headers["Mf-Sequence"]), "event": event}))
        else:
            print(describe(event, headers))
        sys.stdout.flush()
        printed += 1
        if args.count and printed >= args.count:
            done.set()

    await client.subscribe(subject, cb=on_message)
    await client.flush()
    print(f"subscribed to {subject} on {args.url}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop, done.set)
    await done.wait()
    await client.drain()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="nats://127.0.0.1:14222", help="NATS server URL")
    parser.add_argument("--creds", help="NATS credentials file, if your server needs one")
    parser.add_argument("--root", default="mf", help="subject root (default mf)")
    parser.add_argument("--workspace", required=True, help="your workspace id")
    parser.add_argument("--type", help="only this event type, e.g. project.staffed")
    parser.add_argument("--json", action="store_true", help="print whole events as JSON")
    parser.add_argument("--count", type=int, default=0, help="exit after this many events")
    return asyncio.run(follow(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
