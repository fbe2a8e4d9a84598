"""Live updates of workspace views, shared by every open stream of this process.

One subscription to every live signal (`<root>.live.*`, sent by the view projection after
each committed batch). Signals are coalesced over a few milliseconds; the projects they name
are read once for all streams, and each stream is handed the documents of its workspace and
of the network's open calls. A signal that names no projects (or a failed read) asks the
streams concerned to re-read their whole view. A stream's pending change is merged, never
queued: a burst ends in the newest document of every project, whatever was skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

import asyncpg
import structlog
from nats.aio.client import Client as NatsClient

from contracts.subjects import SubjectScheme
from services.projects import queries
from services.projects.views import NETWORK

log = structlog.get_logger(__name__)

COALESCE_SECONDS = 0.001  # signals of one commit arrive together; more gather during a read
MAX_NOTIFICATIONS = 1000  # waiting on one stream; more are dropped (and logged)


@dataclass(slots=True)
class Change:
    """What a stream sends next: notifications, then the whole view or these projects."""

    notifications: list[bytes] = field(default_factory=list)
    whole_view: bool = False
    projects: dict[str, dict | None] = field(default_factory=dict)  # None: not in the view


class LiveStream:
    """The pending change of one open stream, merged until the stream takes it."""

    def __init__(self, workspace_id: str):
        self.workspace_id = workspace_id
        self._pending = Change()
        self._ready = asyncio.Event()

    def offer(self, *, whole_view: bool = False, projects: dict[str, dict | None]) -> None:
        self._pending.whole_view |= whole_view
        self._pending.projects.update(projects)
        self._ready.set()

    def notify(self, data: bytes) -> None:
        if len(self._pending.notifications) >= MAX_NOTIFICATIONS:
            log.warning("live.notification_dropped", workspace_id=self.workspace_id)
            return
        self._pending.notifications.append(data)
        self._ready.set()

    async def next(self, timeout: float) -> Change | None:
        """The change merged since the last call; None if nothing came within `timeout`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return None
        self._ready.clear()
        change, self._pending = self._pending, Change()
        return change


class LiveHub:
    def __init__(
        self,
        nats: NatsClient,
        scheme: SubjectScheme,
        views: asyncpg.Pool,
        coalesce_seconds: float = COALESCE_SECONDS,
    ):
        self._nats, self._scheme, self._views = nats, scheme, views
        self._coalesce = coalesce_seconds
        self._streams: dict[str, set[LiveStream]] = {}
        self._whole: set[str] = set()  # workspaces (or NETWORK) changed in unknown ways
        self._named: dict[str, set[str]] = {}  # workspace (or NETWORK) -> changed projects
        self._wake = asyncio.Event()
        self._started = asyncio.Lock()
        self._subscription = None
        self._flusher: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def stream(self, workspace_id: str):
        """A stream of the workspace's changes; open it before reading the first view."""
        await self._start()
        stream = LiveStream(workspace_id)
        self._streams.setdefault(workspace_id, set()).add(stream)

        async def on_notification(msg) -> None:
            stream.notify(msg.data)

        feed = await self._nats.subscribe(
            self._scheme.workspace_feed(workspace_id), cb=on_notification
        )
        try:
            yield stream
        finally:
            self._streams[workspace_id].discard(stream)
            if not self._streams[workspace_id]:
                del self._streams[workspace_id]
            try:
                await feed.unsubscribe()
            except Exception as error:  # the connection may be closing; nothing to clean up
                log.debug("live.unsubscribe_failed", error=repr(error))

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def _start(self) -> None:
        async with self._started:
            if self._subscription is None:
                self._subscription = await self._nats.subscribe(
                    self._scheme.all_live(), cb=self._on_signal
                )
                self._flusher = asyncio.create_task(self._flush_forever(), name="live-hub")

    async def _on_signal(self, msg) -> None:
        key = msg.subject.rsplit(".", 1)[-1]
        try:
            named = json.loads(msg.data).get("projects")
        except (ValueError, AttributeError):
            named = None
        if isinstance(named, list):
            self._named.setdefault(key, set()).update(named)
        else:
            self._whole.add(key)
        self._wake.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._coalesce)  # let a burst of signals arrive
            self._wake.clear()
            whole, named = self._whole, self._named
            self._whole, self._named = set(), {}
            try:
                await self._hand_out(whole, named)
            except Exception as error:  # the streams re-read their views instead
                log.warning("live.read_failed", error=repr(error))
                self._hand_out_whole_views()

    async def _hand_out(self, whole: set[str], named: dict[str, set[str]]) -> None:
        streams = {w: set(s) for w, s in self._streams.items()}
        wanted = set(named.get(NETWORK, ())) if streams else set()
        for workspace_id in streams:
            wanted |= named.get(workspace_id, set())
        documents: dict[str, dict] = {}
        if wanted:
            async with self._views.acquire() as connection:
                for document in await queries.projects_by_id(connection, sorted(wanted)):
                    documents[document["project_id"]] = document
        for workspace_id, open_streams in streams.items():
            ids = named.get(workspace_id, set()) | named.get(NETWORK, set())
            whole_view = workspace_id in whole or NETWORK in whole
            if not ids and not whole_view:
                continue
            projects = {pid: documents.get(pid) for pid in ids}
            for stream in open_streams:
                stream.offer(whole_view=whole_view, projects=projects)

    def _hand_out_whole_views(self) -> None:
        for open_streams in list(self._streams.values()):
            for stream in list(open_streams):
                stream.offer(whole_view=True, projects={})


class HeldProjects:
    """What one stream's client holds of each project, to send a `project` event only when
    its document (or the sections showing it) changed, and never an older version."""

    def __init__(self, workspace_id: str, view: dict):
        self.workspace_id = workspace_id
        self._held: dict[str, tuple[int, int]] = {}  # project -> (version, hash of the event)
        documents = {p["project_id"]: p for p in view.get("open_calls", ())}
        documents |= {p["project_id"]: p for p in view["projects"]}
        for document in documents.values():
            self.event_for({k: v for k, v in document.items() if k != "relation"})

    def event_for(self, document: dict) -> str | None:
        """The data of a `project` event for this document (JSON), None if nothing to send:
        {"project": document (with "relation" when in the workspace's own projects),
         "sections": the parts of the view showing it, [] once it left them}."""
        project_id, version = document["project_id"], document["version"]
        held = self._held.get(project_id)
        if held is not None and version < held[0]:
            return None
        sections = []
        if self.workspace_id in document["scope"]:
            sections.append("projects")
            document = {**document, "relation": queries.relation(document, self.workspace_id)}
        if document["open_call"] and document["status"] == "proposed":
            sections.append("open_calls")
        if held is None and not sections:
            return None
        data = json.dumps({"project": document, "sections": sections}, separators=(",", ":"))
        digest = hash(data)
        if held is not None and held[1] == digest:
            return None
        self._held[project_id] = (version, digest)
        return data
