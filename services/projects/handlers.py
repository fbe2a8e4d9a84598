"""Use cases of the projects service: load, decide, append with the expected version.

Handlers get their ports (event store, clock, id source) from the caller; they never touch
HTTP, settings or logging configuration.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Generic, Protocol, TypeVar

from contracts import commands as requests
from contracts.base import Event
from contracts.envelope import Envelope, PendingEvent
from contracts.matching import CandidatesProposed
from infra.eventstore import ConcurrencyError, EventStore
from infra.keyed_lock import KeyedLock
from services.projects import domain
from services.projects.domain import Actor

S = TypeVar("S")

INVITATION_TTL = timedelta(days=7)
_CONFLICT_RETRIES = 3
_IDS = uuid.UUID("6f1b3c1e-7a52-4c55-9a4e-0b9f6f7d1c2a")  # namespace of derived ids


class Clock(Protocol):
    def now(self) -> datetime: ...


class IdSource(Protocol):
    def __call__(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CommandMetadata:
    actor: Actor
    correlation_id: str
    causation_id: str | None = None
    traceparent: str | None = None
    # With a key, every id a command creates is derived from it, so a retry after a crash
    # produces the very same events and the store recognises them as already stored.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    aggregate_id: str
    version: int
    events: tuple[Event, ...]
    sequences: tuple[int, ...]
    duplicate: bool = False


class _Ids:
    def __init__(self, metadata: CommandMetadata, fresh: IdSource) -> None:
        self._key = metadata.idempotency_key
        self._fresh = fresh
        self._count = 0

    def __call__(self) -> str:
        self._count += 1
        if self._key is None:
            return self._fresh()
        return uuid.uuid5(_IDS, f"{self._key}:{self._count}").hex


def actor_label(actor: Actor) -> str:
    if actor.member_id:
        return f"member:{actor.member_id}"
    return f"{actor.role}:{actor.workspace_id}"


@dataclass(slots=True)
class _Cached(Generic[S]):
    state: S
    version: int


class Repository(Generic[S]):
    """Folded aggregates kept in memory by id and version. The cache is trusted when
    deciding; an append at a stale version is refused by the store, which refreshes it."""

    def __init__(
        self,
        store: EventStore,
        aggregate: str,
        initial: Callable[[str], S],
        evolve: Callable[[S, Event], S],
        capacity: int = 50_000,
    ) -> None:
        self.store = store
        self.aggregate = aggregate
        self.initial = initial
        self.evolve = evolve
        self.capacity = capacity
        self._cache: OrderedDict[str, _Cached[S]] = OrderedDict()

    async def load(self, aggregate_id: str, *, refresh: bool = False) -> tuple[S, int]:
        cached = self._cache.get(aggregate_id)
        if cached is not None and not refresh:
            self._cache.move_to_end(aggregate_id)
            return cached.state, cached.version
        start = cached or _Cached(self.initial(aggregate_id), 0)
        history = await self.store.load(self.aggregate, aggregate_id, after_version=start.version)
        state = reduce(self.evolve, (recorded.event for recorded in history.events), start.state)
        self.remember(aggregate_id, state, history.version)
        return state, history.version

    def remember(self, aggregate_id: str, state: S, version: int) -> None:
        self._cache[aggregate_id] = _Cached(state, version)
        self._cache.move_to_end(aggregate_id)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def forget(self, aggregate_id: str) -> None:
        self._cache.pop(aggregate_id, None)


class ProjectsHandlers:
    """Commands on one aggregate given to one instance run one at a time, in arrival order
    (a per-aggregate lock), so they never conflict with each other; conflicts with other
    processes are refreshed and decided again, or surfaced."""

    def __init__(self, store: EventStore, clock: Clock, new_id: IdSource) -> None:
        self.store = store
        self.clock = clock
        self.new_id = new_id
        self.locks = KeyedLock()  # keys: (aggregate, aggregate id)
        self.workspaces: Repository[domain.Workspace] = Repository(
            store,
            "workspace",
            lambda i: domain.Workspace(workspace_id=i),
            domain.evolve_workspace,
        )
        self.members: Repository[domain.Member] = Repository(
            store, "member", lambda i: domain.Member(member_id=i), domain.evolve_member
        )
        self.projects: Repository[domain.Project] = Repository(
            store, "project", lambda i: domain.Project(project_id=i), domain.evolve_project
        )

    # -- workspaces and members ---------------------------------------------------------------

    async def register_workspace(
        self, request: requests.RegisterWorkspace, meta: CommandMetadata
    ) -> Outcome:
        command = domain.RegisterWorkspace(request)
        return await self._execute(
            self.workspaces,
            request.workspace_id,
            lambda state, _now: domain.decide_workspace(state, command, meta.actor),
            lambda state: (request.workspace_id,),
            meta,
            expected_version=None,  # exists already: the domain says so, by name
        )

    async def join_workspace(
        self, workspace_id: str, request: requests.JoinWorkspace, meta: CommandMetadata
    ) -> Outcome:
        workspace, _ = await self.workspaces.load(workspace_id, refresh=True)
        ids = _Ids(meta, self.new_id)
        member_id = request.member_id or ids()
        command = domain.JoinWorkspace(member_id, workspace, request)
        return await self._execute(
            self.members,
            member_id,
            lambda state, _now: domain.decide_member(state, command, meta.actor),
            lambda state: (workspace_id,),
            meta,
            expected_version=None,
            ids=ids,
        )

    async def change_member(
        self,
        member_id: str,
        request: requests.DeclareCapabilities | requests.ChangeCapacity,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        command = (
            domain.DeclareCapabilities(request)
            if isinstance(request, requests.DeclareCapabilities)
            else domain.ChangeCapacity(request)
        )
        return await self._execute(
            self.members,
            member_id,
            lambda state, _now: domain.decide_member(state, command, meta.actor),
            lambda state: (state.workspace_id,),
            meta,
            expected_version,
        )

    # -- joint projects --------------------------------------------------------------------

    async def propose(self, request: requests.ProposeProject, meta: CommandMetadata) -> Outcome:
        ids = _Ids(meta, self.new_id)
        project_id = ids()
        command = domain.Propose(project_id, request)
        return await self._project(project_id, command, meta, expected_version=0, ids=ids)

    async def invite(
        self,
        project_id: str,
        request: requests.InvitePartner,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        invitee, _ = await self.members.load(request.member_id, refresh=True)
        now = self.clock.now()
        expires_at = request.expires_at or now + INVITATION_TTL
        ids = _Ids(meta, self.new_id)
        invitation_id = ids()
        command = domain.Invite(
            invitation_id, request.role_id, invitee, expires_at, request.message
        )
        return await self._project(project_id, command, meta, expected_version, ids=ids)

    async def invite_from_proposal(
        self,
        project_id: str,
        request: requests.InviteFromProposal,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        history = await self.store.load("matching", project_id)
        proposals = [r.event for r in history.events if isinstance(r.event, CandidatesProposed)]
        if not proposals:
            raise domain.NotFoundError(f"matching has proposed no candidates for {project_id} yet")
        role = next((p for p in proposals[-1].proposals if p.role_id == request.role_id), None)
        if role is None:
            raise domain.InvalidCommandError(f"the latest proposal has no role {request.role_id!r}")
        candidate = next((c for c in role.candidates if c.rank == request.rank), None)
        if candidate is None:
            reason = role.no_candidates_reason or f"only {len(role.candidates)} candidates"
            raise domain.InvalidCommandError(
                f"no candidate ranked {request.rank} for {request.role_id}: {reason}"
            )
        invite = requests.InvitePartner(
            role_id=request.role_id,
            member_id=candidate.member_id,
            expires_at=request.expires_at,
            message=request.message,
        )
        return await self.invite(project_id, invite, meta, expected_version)

    async def accept(
        self, project_id: str, invitation_id: str, meta: CommandMetadata, expected_version=None
    ) -> Outcome:
        return await self._project(project_id, domain.Accept(invitation_id), meta, expected_version)

    async def decline(
        self,
        project_id: str,
        invitation_id: str,
        request: requests.DeclineInvitation,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        command = domain.Decline(invitation_id, request.reason)
        return await self._project(project_id, command, meta, expected_version)

    async def expire(self, project_id: str, invitation_id: str, meta: CommandMetadata) -> Outcome:
        return await self._project(project_id, domain.Expire(invitation_id), meta, None)

    async def withdraw(
        self,
        project_id: str,
        request: requests.WithdrawPartner,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        command = domain.Withdraw(request.role_id, request.reason)
        return await self._project(project_id, command, meta, expected_version)

    async def start_production(
        self, project_id: str, request: requests.Note, meta: CommandMetadata, expected_version=None
    ) -> Outcome:
        command = domain.StartProduction(request.note)
        return await self._project(project_id, command, meta, expected_version)

    async def record_progress(
        self,
        project_id: str,
        request: requests.ProgressNote,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        command = domain.RecordProgress(request.note)
        return await self._project(project_id, command, meta, expected_version)

    async def deliver(
        self, project_id: str, request: requests.Note, meta: CommandMetadata, expected_version=None
    ) -> Outcome:
        command = domain.Deliver(request.note)
        return await self._project(project_id, command, meta, expected_version)

    async def cancel(
        self,
        project_id: str,
        request: requests.CancelProject,
        meta: CommandMetadata,
        expected_version: int | None = None,
    ) -> Outcome:
        command = domain.Cancel(request.reason)
        return await self._project(project_id, command, meta, expected_version)

    # -- the one way a command is carried out -----------------------------------------------

    def _project(
        self,
        project_id: str,
        command: domain.ProjectCommand,
        meta: CommandMetadata,
        expected_version: int | None,
        ids: _Ids | None = None,
    ) -> Coroutine[None, None, Outcome]:
        # not a coroutine itself: one frame less between every project command and the store
        return self._execute(
            self.projects,
            project_id,
            lambda state, now: domain.decide_project(state, command, meta.actor, now),
            lambda state: state.workspace_scope,
            meta,
            expected_version,
            ids=ids,
        )

    async def _execute(
        self,
        repository: Repository[S],
        aggregate_id: str,
        decide: Callable[[S, datetime], Sequence[Event]],
        scope_of: Callable[[S], tuple[str, ...]],
        meta: CommandMetadata,
        expected_version: int | None,
        ids: IdSource | None = None,
    ) -> Outcome:
        """Load (from cache), decide, append at the version decided on. On a conflict the
        state is refreshed and the command decided again — unless the caller pinned the
        version it saw (If-Match), in which case the conflict is theirs to resolve."""
        if ids is None:
            ids = _Ids(meta, self.new_id) if meta.idempotency_key is not None else self.new_id
        # Event ids are made once per command and kept through its retries. Derived ones (with
        # an idempotency key) are made up front: a retry finds its events in the log by them
        # even when it decides nothing new. Fresh ones only as events need them.
        event_ids = [ids(), ids()] if meta.idempotency_key is not None else []
        async with self.locks((repository.aggregate, aggregate_id)):
            try:
                return await self._decide_and_append(
                    repository,
                    aggregate_id,
                    decide,
                    scope_of,
                    meta,
                    expected_version,
                    ids,
                    event_ids,
                )
            except (ConcurrencyError, domain.DomainError):
                if meta.idempotency_key is None:
                    raise
                done = await self._already_appended(repository.aggregate, aggregate_id, event_ids)
                if done is None:
                    raise
                return done

    async def _already_appended(
        self, aggregate: str, aggregate_id: str, event_ids: list[str]
    ) -> Outcome | None:
        """A retried command (same idempotency key) whose events are in the log already:
        its first run appended them and crashed, or answered a client that never heard."""
        history = await self.store.load(aggregate, aggregate_id)
        ours = [r for r in history.events if r.event_id in event_ids]
        if not ours or ours[0].event_id != event_ids[0]:
            return None
        return Outcome(
            aggregate_id,
            history.version,
            tuple(r.event for r in ours),
            tuple(r.sequence for r in ours),
            duplicate=True,
        )

    async def _decide_and_append(
        self,
        repository: Repository[S],
        aggregate_id: str,
        decide: Callable[[S, datetime], Sequence[Event]],
        scope_of: Callable[[S], tuple[str, ...]],
        meta: CommandMetadata,
        expected_version: int | None,
        ids: IdSource,
        event_ids: list[str],
    ) -> Outcome:
        conflict: ConcurrencyError | None = None
        actor = actor_label(meta.actor)
        for attempt in range(_CONFLICT_RETRIES):
            state, version = await repository.load(aggregate_id, refresh=attempt > 0)
            if expected_version is not None and expected_version != version:
                if attempt == 0 and expected_version > version:
                    continue  # our cache may be behind the client: refresh, then judge
                raise ConcurrencyError(
                    repository.aggregate, aggregate_id, expected_version, version
                )
            now = self.clock.now()
            events = list(decide(state, now))
            after = reduce(repository.evolve, events, state)
            while len(event_ids) < len(events):
                event_ids.append(ids())
            scope = scope_of(after)
            envelopes = [
                self._envelope(
                    event, repository.aggregate, aggregate_id, event_id, scope, actor, meta, now
                )
                for event, event_id in zip(events, event_ids, strict=False)
            ]
            try:
                result = await self.store.append(
                    repository.aggregate, aggregate_id, envelopes, version
                )
            except ConcurrencyError as error:
                conflict = error
                if expected_version is not None:
                    raise
                continue
            if result.duplicate:
                repository.forget(aggregate_id)
            else:
                repository.remember(aggregate_id, after, result.version)
            return Outcome(
                aggregate_id, result.version, tuple(events), result.sequences, result.duplicate
            )
        assert conflict is not None
        raise conflict

    @staticmethod
    def _envelope(
        event: Event,
        aggregate: str,
        aggregate_id: str,
        event_id: str,
        scope: tuple[str, ...],
        actor: str,
        meta: CommandMetadata,
        now: datetime,
    ) -> PendingEvent:
        envelope = Envelope.of(
            {
                "event_id": event_id,
                "type": event.type,
                "schema_version": type(event).schema_version,
                "aggregate": aggregate,  # the store refuses an event of another aggregate
                "aggregate_id": aggregate_id,
                "occurred_at": now,
                "actor": actor,
                "workspace_scope": scope,
                "correlation_id": meta.correlation_id,
                "causation_id": meta.causation_id,
                "traceparent": meta.traceparent,
            }
        )
        return PendingEvent(envelope, event)
