"""The HTTP API of the projects service: commands for coordinators and members, reads of
projects, their history and the workspace live view (JSON and Server-Sent Events)."""

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import asyncpg
import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from nats.aio.client import Client as NatsClient

from contracts import commands as requests
from contracts.subjects import SubjectScheme
from infra.auth import TokenClaims
from infra.eventstore import ConcurrencyError, EventStore, EventStoreError
from infra.http_auth import BEARER_OPENAPI, TokenVerifier, claims_dependency
from infra.ids import new_id
from services.projects import domain, queries
from services.projects.handlers import CommandMetadata, Outcome, ProjectsHandlers
from services.projects.idempotency import (
    IdempotencyConflictError,
    IdempotencyKeys,
    StoredResponse,
    request_fingerprint,
)
from services.projects.live import HeldProjects, LiveHub

log = structlog.get_logger(__name__)

PAGE = Path(__file__).with_name("static") / "index.html"
KEEPALIVE_SECONDS = 15.0

IDEMPOTENCY_KEY_LENGTH = 200

_STATUS_OF_RULE = {
    domain.NotFoundError: 404,
    domain.NotAllowedError: 403,
    domain.InvalidCommandError: 422,
}


@dataclass(frozen=True, slots=True)
class ApiPorts:
    handlers: ProjectsHandlers
    store: EventStore
    views: asyncpg.Pool  # search_path: the view schema
    idempotency: IdempotencyKeys
    nats: NatsClient | None
    scheme: SubjectScheme
    token_secret: str


@dataclass(frozen=True, slots=True)
class CommandHeaders:
    """What every command reads from its headers: who calls, and how it may be repeated."""

    claims: TokenClaims
    if_match: str | None
    idempotency_key: str | None


IF_MATCH_OPENAPI = {
    "name": "if-match",
    "in": "header",
    "required": False,
    "description": 'Expected version, e.g. "12"',
    "schema": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": 'Expected version, e.g. "12"',
        "title": "If-Match",
    },
}
IDEMPOTENCY_KEY_OPENAPI = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "schema": {
        "anyOf": [{"type": "string", "maxLength": IDEMPOTENCY_KEY_LENGTH}, {"type": "null"}],
        "title": "Idempotency-Key",
    },
}


def command_openapi(if_match: bool = True) -> dict:
    """The headers `command_headers` reads, as declared dependencies would describe them
    (commands that create something take no If-Match)."""
    parameters = (
        [IF_MATCH_OPENAPI, IDEMPOTENCY_KEY_OPENAPI] if if_match else [IDEMPOTENCY_KEY_OPENAPI]
    )
    return {**BEARER_OPENAPI, "parameters": parameters}


def create_api(ports: ApiPorts) -> FastAPI:
    hub = LiveHub(ports.nats, ports.scheme, ports.views) if ports.nats is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if hub is not None:
            await hub.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Multifactory Backbone — projects",
        version="1",
        description="Joint projects across shared workspaces: propose, staff, produce, deliver.",
    )
    Claims = Annotated[TokenClaims, Depends(claims_dependency(ports.token_secret))]
    verifier = TokenVerifier(ports.token_secret)

    async def command_headers(request: Request) -> CommandHeaders:
        """Authorization, If-Match and Idempotency-Key read at once, as one dependency (a bearer
        scheme, a claims dependency and two header parameters cost FastAPI four solves);
        command_openapi() describes them."""
        headers = request.headers
        claims = verifier.claims_of(headers.get("authorization"))
        key = headers.get("idempotency-key")
        if key is not None and len(key) > IDEMPOTENCY_KEY_LENGTH:
            raise RequestValidationError(
                [
                    {
                        "type": "string_too_long",
                        "loc": ("header", "idempotency-key"),
                        "msg": f"String should have at most {IDEMPOTENCY_KEY_LENGTH} characters",
                        "input": key,
                    }
                ]
            )
        return CommandHeaders(claims, headers.get("if-match"), key)

    Command = Annotated[CommandHeaders, Depends(command_headers)]

    # -- errors ------------------------------------------------------------------------------

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError):
        problems = [
            {
                "field": ".".join(str(p) for p in item["loc"] if p not in ("body",)),
                "reason": item["msg"],
            }
            for item in error.errors()
        ]
        return JSONResponse(
            {"error": "invalid_request", "detail": _sentence(problems), "problems": problems},
            status_code=422,
        )

    @app.exception_handler(domain.DomainError)
    async def refused(_request: Request, error: domain.DomainError):
        status = next((s for cls, s in _STATUS_OF_RULE.items() if isinstance(error, cls)), 409)
        return JSONResponse({"error": error.rule, "detail": str(error)}, status_code=status)

    @app.exception_handler(ConcurrencyError)
    async def conflict(_request: Request, error: ConcurrencyError):
        return JSONResponse(
            {
                "error": "version_conflict",
                "detail": str(error),
                "current_version": error.actual,
            },
            status_code=409,
            headers={"ETag": f'"{error.actual}"'},
        )

    @app.exception_handler(EventStoreError)
    async def log_unavailable(_request: Request, error: EventStoreError):
        log.error("api.event_log_unavailable", error=str(error))
        return JSONResponse(
            {
                "error": "event_log_unavailable",
                "detail": "the event log did not answer; retry with the same Idempotency-Key",
            },
            status_code=503,
        )

    # -- the one way a command is run -------------------------------------------------------

    async def run(
        request: Request,
        command: CommandHeaders,
        action: Callable[[CommandMetadata], Awaitable[Outcome]],
        status_code: int = 200,
    ) -> JSONResponse:
        claims, idempotency_key = command.claims, command.idempotency_key
        caller = f"{claims.workspace_id}/{claims.member_id or claims.role}"
        headers = request.headers
        correlation_id = headers.get("x-correlation-id") or new_id()
        meta = CommandMetadata(
            actor=domain.Actor(claims.workspace_id, claims.role, claims.member_id),
            correlation_id=correlation_id[:64],
            traceparent=headers.get("traceparent"),
            idempotency_key=f"{caller}/{idempotency_key}" if idempotency_key else None,
        )
        path = request.scope["path"]
        with structlog.contextvars.bound_contextvars(
            correlation_id=meta.correlation_id, actor=caller, path=path
        ):
            if idempotency_key is None:
                outcome = await action(meta)
                return _outcome_response(outcome, status_code)
            fingerprint = request_fingerprint(request.method, path, await request.body())
            try:
                stored = await ports.idempotency.begin(caller, idempotency_key, fingerprint)
            except IdempotencyConflictError as error:
                return JSONResponse(
                    {"error": "idempotency_key_conflict", "detail": str(error)}, status_code=409
                )
            if stored is not None:
                log.info("api.idempotent_replay", key=idempotency_key)
                return JSONResponse(
                    stored.body, status_code=stored.status, headers={"Idempotent-Replay": "true"}
                )
            try:
                outcome = await action(meta)
            except BaseException:
                await ports.idempotency.release(caller, idempotency_key)
                raise
            response = _outcome_response(outcome, status_code)
            await ports.idempotency.complete(
                caller, idempotency_key, StoredResponse(status_code, json.loads(response.body))
            )
            return response

    handlers = ports.handlers

    # -- workspaces and members ---------------------------------------------------------------

    @app.post(
        "/workspaces",
        status_code=201,
        tags=["workspaces"],
        openapi_extra=command_openapi(if_match=False),
    )
    async def register_workspace(
        body: requests.RegisterWorkspace,
        request: Request,
        command: Command,
    ):
        """Register a workspace (ops only)."""
        return await run(
            request,
            command,
            lambda meta: handlers.register_workspace(body, meta),
            201,
        )

    @app.post(
        "/workspaces/{workspace_id}/members",
        status_code=201,
        tags=["workspaces"],
        openapi_extra=command_openapi(if_match=False),
    )
    async def join_workspace(
        workspace_id: str,
        body: requests.JoinWorkspace,
        request: Request,
        command: Command,
    ):
        """Add a member (company, artisan, professional, collective) to a workspace."""
        return await run(
            request,
            command,
            lambda meta: handlers.join_workspace(workspace_id, body, meta),
            201,
        )

    @app.put(
        "/members/{member_id}/capabilities", tags=["workspaces"], openapi_extra=command_openapi()
    )
    async def declare_capabilities(
        member_id: str,
        body: requests.DeclareCapabilities,
        request: Request,
        command: Command,
    ):
        version = _version(command.if_match)
        return await run(
            request,
            command,
            lambda meta: handlers.change_member(member_id, body, meta, version),
        )

    @app.put("/members/{member_id}/capacity", tags=["workspaces"], openapi_extra=command_openapi())
    async def change_capacity(
        member_id: str,
        body: requests.ChangeCapacity,
        request: Request,
        command: Command,
    ):
        version = _version(command.if_match)
        return await run(
            request,
            command,
            lambda meta: handlers.change_member(member_id, body, meta, version),
        )

    @app.get("/workspaces/{workspace_id}", tags=["workspaces"])
    async def get_workspace(workspace_id: str, claims: Claims):
        async with ports.views.acquire() as connection:
            found = await queries.workspace(connection, workspace_id)
            if found is None:
                raise HTTPException(404, f"workspace {workspace_id} is not registered")
            found["member_list"] = await queries.members_of(connection, workspace_id)
        return found

    # -- joint projects ------------------------------------------------------------------------

    @app.post(
        "/projects",
        status_code=201,
        tags=["projects"],
        openapi_extra=command_openapi(if_match=False),
    )
    async def propose(
        body: requests.ProposeProject,
        request: Request,
        command: Command,
    ):
        """Propose a joint project (a coordinator token, acting for its workspace)."""
        return await run(request, command, lambda meta: handlers.propose(body, meta), 201)

    def project_command(path: str, name: str, body_model, call, status_code: int = 200):
        """Register POST /projects/{id}/<path>: every project command has this shape."""

        async def endpoint(
            project_id: str,
            request: Request,
            body: body_model,  # a pydantic model: validated, errors name the field
            command: Command,
        ):
            version = _version(command.if_match)
            return await run(
                request,
                command,
                lambda meta: call(project_id, request, body, meta, version),
                status_code,
            )

        endpoint.__name__ = name
        app.post(
            f"/projects/{{project_id}}/{path}",
            tags=["projects"],
            name=name,
            openapi_extra=command_openapi(),
        )(endpoint)

    project_command(
        "invitations",
        "invite_partner",
        requests.InvitePartner,
        lambda pid, _r, body, meta, v: handlers.invite(pid, body, meta, v),
        201,
    )
    project_command(
        "invitations/from-proposal",
        "invite_from_proposal",
        requests.InviteFromProposal,
        lambda pid, _r, body, meta, v: handlers.invite_from_proposal(pid, body, meta, v),
        201,
    )
    project_command(
        "withdrawal",
        "withdraw",
        requests.WithdrawPartner,
        lambda pid, _r, body, meta, v: handlers.withdraw(pid, body, meta, v),
    )
    project_command(
        "production",
        "start_production",
        requests.Note,
        lambda pid, _r, body, meta, v: handlers.start_production(pid, body, meta, v),
    )
    project_command(
        "progress",
        "record_progress",
        requests.ProgressNote,
        lambda pid, _r, body, meta, v: handlers.record_progress(pid, body, meta, v),
    )
    project_command(
        "delivery",
        "deliver",
        requests.Note,
        lambda pid, _r, body, meta, v: handlers.deliver(pid, body, meta, v),
    )
    project_command(
        "cancellation",
        "cancel",
        requests.CancelProject,
        lambda pid, _r, body, meta, v: handlers.cancel(pid, body, meta, v),
    )

    @app.post(
        "/projects/{project_id}/invitations/{invitation_id}/acceptance",
        tags=["projects"],
        openapi_extra=command_openapi(),
    )
    async def accept(
        project_id: str,
        invitation_id: str,
        request: Request,
        command: Command,
    ):
        """Accept an invitation (the invited member). The last seat also staffs the project."""
        version = _version(command.if_match)
        return await run(
            request,
            command,
            lambda meta: handlers.accept(project_id, invitation_id, meta, version),
        )

    @app.post(
        "/projects/{project_id}/invitations/{invitation_id}/decline",
        tags=["projects"],
        openapi_extra=command_openapi(),
    )
    async def decline(
        project_id: str,
        invitation_id: str,
        body: requests.DeclineInvitation,
        request: Request,
        command: Command,
    ):
        version = _version(command.if_match)
        return await run(
            request,
            command,
            lambda meta: handlers.decline(project_id, invitation_id, body, meta, version),
        )

    async def visible_project(project_id: str, claims: TokenClaims) -> dict:
        async with ports.views.acquire() as connection:
            found = await queries.project(connection, project_id)
        if found is None or not _may_see(found, claims):
            raise HTTPException(404, f"project {project_id} not found")
        return found

    @app.get("/projects/{project_id}", tags=["projects"])
    async def get_project(project_id: str, claims: Claims):
        """The project as the live view shows it (eventually consistent with the log)."""
        found = await visible_project(project_id, claims)
        return JSONResponse(found, headers={"ETag": f'"{found["version"]}"'})

    @app.get("/projects/{project_id}/history", tags=["projects"])
    async def project_history(project_id: str, claims: Claims):
        """Every event of the project, from the log: sequence, time, actor, data."""
        history = await ports.store.load("project", project_id)
        state = domain.fold_project([recorded.event for recorded in history.events])
        visible = state.status != "new" and (
            claims.role == "ops"
            or claims.workspace_id in state.workspace_scope
            or (state.open_call and state.status == "proposed")
        )
        if not visible:
            raise HTTPException(404, f"project {project_id} not found")
        matching = await ports.store.load("matching", project_id)
        recorded = sorted([*history.events, *matching.events], key=lambda r: r.sequence)
        return {
            "project_id": project_id,
            "version": history.version,
            "status": state.status,
            "events": [
                {
                    "sequence": r.sequence,
                    "recorded_at": r.recorded_at.isoformat(),
                    "occurred_at": r.envelope.occurred_at.isoformat(),
                    "type": r.type,
                    "actor": r.envelope.actor,
                    "event_id": r.event_id,
                    "correlation_id": r.envelope.correlation_id,
                    "data": r.event.data(),
                }
                for r in recorded
            ],
        }

    @app.get("/open-calls", tags=["projects"])
    async def open_calls(claims: Claims):
        """Projects open for partners, network-wide."""
        async with ports.views.acquire() as connection:
            return {"projects": await queries.open_calls(connection)}

    # -- the live view -------------------------------------------------------------------------

    async def view_of(workspace_id: str) -> dict:
        async with ports.views.acquire() as connection:
            view = await queries.workspace_view(connection, workspace_id)
            if view is not None:
                view["open_calls"] = await queries.open_calls(connection)
        if view is None:
            raise HTTPException(404, f"workspace {workspace_id} is not registered")
        return view

    def check_workspace(workspace_id: str, claims: TokenClaims) -> None:
        if claims.role != "ops" and claims.workspace_id != workspace_id:
            raise HTTPException(403, "a workspace sees only its own live view")

    @app.get("/workspaces/{workspace_id}/view", tags=["live view"])
    async def workspace_view(workspace_id: str, claims: Claims):
        """The joint projects this workspace coordinates or takes part in, and open calls."""
        check_workspace(workspace_id, claims)
        return await view_of(workspace_id)

    @app.get("/workspaces/{workspace_id}/live", tags=["live view"])
    async def workspace_live(workspace_id: str, request: Request, claims: Claims):
        """Server-Sent Events: `view` (the whole view, first and whenever it must be re-read),
        `project` (one changed project: {"project": its document, "sections": the parts of the
        view showing it, `projects` and/or `open_calls`, [] once it left them}) and
        `notification` (events from the workspace's feed)."""
        check_workspace(workspace_id, claims)
        if hub is None:
            raise HTTPException(503, "live updates need NATS")
        async with ports.views.acquire() as connection:
            if await queries.workspace(connection, workspace_id) is None:
                raise HTTPException(404, f"workspace {workspace_id} is not registered")
        return StreamingResponse(
            _live_events(hub, workspace_id, view_of, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- the page and health -------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text())

    @app.get("/health", tags=["ops"])
    async def health():
        return {"status": "ok"}

    @app.get("/whoami", tags=["ops"])
    async def whoami(claims: Claims):
        return claims.model_dump(mode="json")

    return app


def openapi_document() -> dict:
    """The API's OpenAPI document, built without any server behind it."""
    return create_api(
        ApiPorts(
            handlers=None,  # type: ignore[arg-type]  (routes are only described, not run)
            store=None,  # type: ignore[arg-type]
            views=None,  # type: ignore[arg-type]
            idempotency=None,  # type: ignore[arg-type]
            nats=None,
            scheme=SubjectScheme(),
            token_secret="",
        )
    ).openapi()


async def _live_events(hub: LiveHub, workspace_id: str, view_of, request: Request):
    async with hub.stream(workspace_id) as stream:  # open before the first read: no gap
        send_view = True
        while True:
            if send_view:  # first, and whenever a change is not just named projects
                try:
                    view = await view_of(workspace_id)
                except HTTPException:
                    return
                held = HeldProjects(workspace_id, view)
                yield _sse("view", view)
                send_view = False
            change = await stream.next(KEEPALIVE_SECONDS)
            if change is None:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            for data in change.notifications:
                yield _sse("notification", _notification(data))
            if change.whole_view or None in change.projects.values():
                send_view = True
                continue
            for document in change.projects.values():
                data = held.event_for(document)
                if data is not None:
                    yield f"event: project\ndata: {data}\n\n"


def _notification(data: bytes) -> dict:
    try:
        document = json.loads(data)
    except ValueError:
        return {"raw": data.decode(errors="replace")}
    return document if isinstance(document, dict) else {"value": document}


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _outcome_response(outcome: Outcome, status_code: int) -> JSONResponse:
    return JSONResponse(
        {
            "id": outcome.aggregate_id,
            "version": outcome.version,
            "events": [
                {"type": event.type, "sequence": sequence}
                for event, sequence in zip(outcome.events, outcome.sequences, strict=False)
            ],
            "duplicate": outcome.duplicate,
        },
        status_code=status_code,
        headers={"ETag": f'"{outcome.version}"'},
    )


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise HTTPException(400, f'If-Match must be a version number like "12", not {if_match!r}')
    return int(value)


def _may_see(project: dict, claims: TokenClaims) -> bool:
    return (
        claims.role == "ops"
        or claims.workspace_id in project["scope"]
        or (project["open_call"] and project["status"] == "proposed")
    )


def _sentence(problems: list[dict]) -> str:
    return "; ".join(f"{p['field'] or 'body'}: {p['reason']}" for p in problems)
