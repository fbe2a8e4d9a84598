"""`mf events export` / `mf events import`: the log as JSON lines, and back.

One line per message, in log order:

    {"sequence": 17, "subject": "mf.events.project.….proposed", "recorded_at": "…",
     "headers": {"Nats-Msg-Id": "…", "Mf-Type": "project.proposed", …}, "body": "{…}"}

`body` is the stored bytes as text (`body_base64` instead when they are not UTF-8), so a
round trip keeps them byte for byte. Import writes into an EMPTY stream only, one message at
a time in order (pipelined), and checks every acknowledgement: the new log has the same
events, order, subjects, bodies and headers — minus the one-time instructions to the server
(`Nats-Expected-*` concurrency checks and `Nats-Batch-*` atomic batch markers), which were
honoured when the events were first stored and would be refused or misread on replay.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors

from infra.eventstore import EventStore, EventStoreError, StoredMessage

# Added by Direct Get to its replies; not part of the stored message.
READ_HEADERS = frozenset(
    {
        "Nats-Stream",
        "Nats-Sequence",
        "Nats-Subject",
        "Nats-Time-Stamp",
        "Nats-Last-Sequence",
        "Nats-Num-Pending",
    }
)
# Instructions to the server at publish time, never replayed.
SERVER_INSTRUCTIONS = ("Nats-Expected-", "Nats-Batch-", "Nats-Rollup")


class ArchiveError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    count: int
    first: int | None  # sequences (exported, or assigned by the import)
    last: int | None
    same_sequences: bool = True  # import: every event kept its original sequence


def to_line(message: StoredMessage) -> str:
    document: dict = {
        "sequence": message.sequence,
        "subject": message.subject,
        "recorded_at": message.recorded_at.isoformat(),
        "headers": {k: v for k, v in message.headers.items() if k not in READ_HEADERS},
    }
    try:
        document["body"] = message.body.decode("utf-8")
    except UnicodeDecodeError:
        document["body_base64"] = base64.b64encode(message.body).decode()
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def from_line(line: str) -> tuple[int, str, bytes, dict[str, str]]:
    document = json.loads(line)
    if "body_base64" in document:
        body = base64.b64decode(document["body_base64"])
    else:
        body = document["body"].encode("utf-8")
    return document["sequence"], document["subject"], body, dict(document.get("headers") or {})


def replayable_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith(SERVER_INSTRUCTIONS)}


async def export_events(
    store: EventStore,
    path: Path,
    *,
    from_sequence: int = 1,
    subject_filter: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ArchiveResult:
    """Write the log (from a sequence, optionally filtered) to `path`, up to the head as it
    was when the export started."""
    head = await store.last_sequence()
    count, first, last = 0, None, None
    position = max(from_sequence, 1)
    with path.open("w", encoding="utf-8") as out:
        while position <= head:
            batch = [
                m for m in await store.read(position, 1000, subject_filter) if m.sequence <= head
            ]
            if not batch:
                break
            out.write("".join(to_line(message) + "\n" for message in batch))
            count += len(batch)
            first = first if first is not None else batch[0].sequence
            last = batch[-1].sequence
            position = last + 1
            if on_progress:
                on_progress(last, head)
    return ArchiveResult(count, first, last)


async def stream_state(client, stream: str) -> dict:
    reply = await client.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
    info = json.loads(reply.data)
    if "error" in info:
        raise ArchiveError(f"stream {stream}: {info['error'].get('description')}")
    return info["state"]


async def import_events(
    store: EventStore,
    path: Path,
    *,
    window: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> ArchiveResult:
    """Publish every line of `path`, in order, into the store's stream, which must be empty."""
    client, stream = getattr(store, "client", None), getattr(store, "stream", None)
    if client is None or not isinstance(stream, str):
        raise ArchiveError("import needs the JetStream event store")
    state = await stream_state(client, stream)
    if state.get("messages", 0):
        raise ArchiveError(
            f"stream {stream} holds {state['messages']} messages: import only into an empty "
            "stream (a fresh data directory, or a new MF_STREAM)"
        )
    importer = _Importer(client, stream, window, state.get("last_seq", 0) + 1)
    await importer.start()
    same = True
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    sequence, subject, body, headers = from_line(line)
                except (ValueError, KeyError) as error:
                    raise ArchiveError(f"{path}:{number}: not an exported event: {error}") from None
                same = same and sequence == importer.first_sequence + importer.sent
                await importer.publish(number, subject, body, replayable_headers(headers))
                if on_progress and importer.sent % 1000 == 0:
                    on_progress(importer.sent)
        await importer.finish()
    finally:
        await importer.close()
    if on_progress:
        on_progress(importer.sent)
    return ArchiveResult(importer.sent, importer.first, importer.last, same)


class _Importer:
    """Pipelined publishes on one connection (the server stores them in the order sent),
    each with its own reply subject, at most `window` unacknowledged; every ack must carry
    the next sequence, else another writer or a repeated event id got in the way."""

    def __init__(self, client, stream: str, window: int, first_sequence: int) -> None:
        self.client = client
        self.stream = stream
        self.window = window
        self.first_sequence = first_sequence
        self.expected = first_sequence  # the sequence the next acknowledged message must get
        self.sent = 0
        self.first: int | None = None
        self.last: int | None = None
        self._inbox = client.new_inbox()
        self._acks: dict[int, asyncio.Future] = {}
        self._unacknowledged: deque[tuple[int, int]] = deque()  # (line number, request id)
        self._subscription = None

    async def start(self) -> None:
        self._subscription = await self.client.subscribe(f"{self._inbox}.*", cb=self._received)

    async def _received(self, msg) -> None:
        future = self._acks.get(int(msg.subject.rsplit(".", 1)[1]))
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_result({"error": {"description": "no stream stores these subjects"}})
        else:
            future.set_result(json.loads(msg.data or b"{}"))

    async def publish(self, number: int, subject: str, body: bytes, headers: dict) -> None:
        request = self.sent
        self.sent += 1
        self._acks[request] = asyncio.get_running_loop().create_future()
        self._unacknowledged.append((number, request))
        await self.client.publish(
            subject, body, reply=f"{self._inbox}.{request}", headers=headers or None
        )
        while len(self._unacknowledged) > self.window or (
            self._unacknowledged and self._acks[self._unacknowledged[0][1]].done()
        ):
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        number, request = self._unacknowledged.popleft()
        try:
            ack = await asyncio.wait_for(asyncio.shield(self._acks[request]), 10)
        except TimeoutError:
            raise EventStoreError(f"no acknowledgement from {self.stream} in 10 s") from None
        finally:
            del self._acks[request]
        if "error" in ack:
            raise ArchiveError(f"line {number} refused by {self.stream}: {ack['error']}")
        if ack.get("seq") != self.expected or ack.get("duplicate"):
            raise ArchiveError(
                f"line {number} was stored as sequence {ack.get('seq')} (duplicate: "
                f"{bool(ack.get('duplicate'))}), expected {self.expected}: another writer, "
                "or an event id repeated in the archive"
            )
        self.first = self.first if self.first is not None else self.expected
        self.last = self.expected
        self.expected += 1

    async def finish(self) -> None:
        await self.client.flush()
        while self._unacknowledged:
            await self._settle_oldest()

    async def close(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                pass
