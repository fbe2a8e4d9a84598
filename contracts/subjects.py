"""Subject names, in one place. Everything is `lower.dot.case` under one root token.

    <root>.events.<aggregate>.<aggregate_id>.<event_name>   the log (stream MF_EVENTS)
    <root>.feed.<workspace_id>.<event_type>                 a workspace's notification feed
    <root>.live.<workspace_id>                              "your view changed" signals

Tests use their own root so runs never see each other's messages.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ROOT = "mf"
DEFAULT_STREAM = "MF_EVENTS"


@dataclass(frozen=True, slots=True)
class SubjectScheme:
    root: str = DEFAULT_ROOT

    @property
    def events_prefix(self) -> str:
        return f"{self.root}.events"

    def all_events(self) -> str:
        return f"{self.root}.events.>"

    def event(self, aggregate: str, aggregate_id: str, name: str) -> str:
        return f"{self.root}.events.{aggregate}.{aggregate_id}.{name}"

    def event_of_type(self, event_type: str, aggregate_id: str) -> str:
        aggregate, name = event_type.split(".", 1)
        return self.event(aggregate, aggregate_id, name)

    def aggregate_events(self, aggregate: str, aggregate_id: str) -> str:
        """Filter for one aggregate's events; also the optimistic-concurrency subject."""
        return f"{self.root}.events.{aggregate}.{aggregate_id}.*"

    def events_of_type(self, event_type: str) -> str:
        aggregate, name = event_type.split(".", 1)
        return f"{self.root}.events.{aggregate}.*.{name}"

    def events_of_aggregate_type(self, aggregate: str) -> str:
        return f"{self.root}.events.{aggregate}.>"

    def feed(self, workspace_id: str, event_type: str) -> str:
        return f"{self.root}.feed.{workspace_id}.{event_type}"

    def workspace_feed(self, workspace_id: str) -> str:
        return f"{self.root}.feed.{workspace_id}.>"

    def live(self, workspace_id: str) -> str:
        return f"{self.root}.live.{workspace_id}"

    def all_live(self) -> str:
        return f"{self.root}.live.*"

    def parse_event(self, subject: str) -> tuple[str, str, str]:
        """`<root>.events.project.P1.proposed` -> ("project", "P1", "proposed")."""
        prefix = f"{self.root}.events."
        if not subject.startswith(prefix):
            raise ValueError(f"subject {subject!r} is not under {prefix!r}")
        parts = subject[len(prefix) :].split(".")
        if len(parts) != 3:
            raise ValueError(f"subject {subject!r} is not <aggregate>.<id>.<event>")
        return parts[0], parts[1], parts[2]
