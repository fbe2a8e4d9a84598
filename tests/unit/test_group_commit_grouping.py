"""How group commit forms groups, with a stand-in for JetStream: writers woken together by
one acknowledgement share the next batch, and a straggler waits for company while a batch
is in flight, instead of leaving behind groups of one (each a separate publish)."""

from __future__ import annotations

import asyncio

from infra.group_commit import GroupCommit, GroupCommitter, Outgoing


class FakeStream:
    def __init__(self, delay: float = 0.003) -> None:
        self.delay = delay
        self.sends: list[int] = []  # messages per send
        self.last = 0

    async def send(self, messages: list[Outgoing]) -> dict:
        self.sends.append(len(messages))
        await asyncio.sleep(self.delay)
        self.last += len(messages)
        return {"stream": "S", "seq": self.last}

    async def subject_at(self, _sequence: int) -> str | None:
        return None


def _message(key: str) -> list[Outgoing]:
    return [(f"{key}.noted", b"{}", {"Nats-Msg-Id": key})]


async def _writers(committer: GroupCommitter, writers: int, appends: int) -> list[dict]:
    async def writer(n: int) -> list[dict]:
        return [
            await committer.submit(f"w{n}.a{k}", _message(f"w{n}.a{k}")) for k in range(appends)
        ]

    return [
        ack for acks in await asyncio.gather(*(writer(n) for n in range(writers))) for ack in acks
    ]


async def test_writers_woken_by_one_acknowledgement_share_the_next_batch():
    stream = FakeStream()
    config = GroupCommit(max_events=100, max_wait=0.05, max_batches_in_flight=4, min_batch=4)
    committer = GroupCommitter(config, stream.send, stream.subject_at)

    acks = await _writers(committer, writers=40, appends=5)

    assert sorted(ack["seq"] for ack in acks) == list(range(1, 201))  # each stored once
    assert stream.sends.count(1) <= 2, stream.sends  # the first, lone append; no groups of one
    assert committer.stats.batches >= 5


async def test_a_lone_append_still_goes_straight_out():
    stream = FakeStream()
    committer = GroupCommitter(GroupCommit(), stream.send, stream.subject_at)

    ack = await committer.submit("w0", _message("w0"))

    assert ack["seq"] == 1 and stream.sends == [1]
    assert committer.stats.direct == 1 and committer.idle
