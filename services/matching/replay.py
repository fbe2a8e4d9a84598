"""Proof of determinism: fold the log into a fresh directory, recompute the proposal of
every trigger, and compare it with the proposal the log holds for that trigger.

Nothing is written anywhere: the directory lives in memory only. A proposal made with
other weights than the ones given is counted apart, not compared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from contracts.matching import CandidatesProposed
from contracts.registry import EventDecodeError
from infra.eventstore import EventStore, StoredMessage
from services.matching.network import Network
from services.matching.scoring import WeightsLike
from services.matching.taxonomy import Taxonomy


@dataclass
class ReplayReport:
    weights_version: str
    events: int = 0
    reproduced: int = 0
    other_weights: int = 0
    # trigger event id -> (project id, what differs)
    differing: dict[str, tuple[str, str]] = field(default_factory=dict)
    # proposals in the log for triggers that the replay does not propose for
    unexplained: list[str] = field(default_factory=list)
    # triggers with a recomputed proposal but none in the log (skipped as stale, or pending)
    not_in_log: int = 0

    @property
    def ok(self) -> bool:
        return not self.differing and not self.unexplained


class ReplayCheck:
    """Feed it the log in order with `feed`, then read `report()`."""

    def __init__(self, taxonomy: Taxonomy, weights: WeightsLike) -> None:
        self.network = Network(taxonomy, weights)
        self.weights_version = weights.version
        self._computed: dict[str, CandidatesProposed] = {}
        self._logged: dict[str, CandidatesProposed] = {}
        self._events = 0

    def feed(self, messages: Iterable[StoredMessage]) -> None:
        for message in messages:
            try:
                recorded = message.decode()
            except EventDecodeError:
                continue  # parked by the live projection as well
            self._events += 1
            trigger = self.network.apply(recorded)
            if trigger is not None:
                proposal = self.network.propose(trigger)
                if proposal is not None:
                    self._computed[trigger.event_id] = proposal
            event = recorded.event
            if isinstance(event, CandidatesProposed):
                self._logged.setdefault(event.trigger_event_id, event)

    def report(self) -> ReplayReport:
        report = ReplayReport(self.weights_version, events=self._events)
        for trigger_id, logged in self._logged.items():
            if logged.weights_version != self.weights_version:
                report.other_weights += 1
                continue
            computed = self._computed.get(trigger_id)
            if computed is None:
                report.unexplained.append(trigger_id)
            elif computed == logged:
                report.reproduced += 1
            else:
                report.differing[trigger_id] = (logged.project_id, _difference(logged, computed))
        report.not_in_log = len(self._computed.keys() - self._logged.keys())
        return report


def _difference(logged: CandidatesProposed, computed: CandidatesProposed) -> str:
    for old, new in zip(logged.proposals, computed.proposals, strict=False):
        if old != new:
            before = [c.member_id for c in old.candidates]
            after = [c.member_id for c in new.candidates]
            return f"role {old.role_id}: logged {before}, replay {after}"
    if logged.team != computed.team:
        return "the suggested team differs"
    return "the proposals differ"


async def read_log(store: EventStore, batch: int = 5000) -> AsyncIterator[list[StoredMessage]]:
    position = 1
    while True:
        messages = await store.read(position, batch)
        if not messages:
            return
        yield messages
        position = messages[-1].sequence + 1


async def verify_replay(
    store: EventStore, taxonomy: Taxonomy, weights: WeightsLike
) -> ReplayReport:
    check = ReplayCheck(taxonomy, weights)
    async for messages in read_log(store):
        check.feed(messages)
    return check.report()
