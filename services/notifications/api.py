"""HTTP API: a workspace's webhook endpoints, its delivery log, dead letters, redelivery.

Every route needs a bearer token. A token sees and manages only its own workspace's
endpoints and deliveries (someone else's answer 404); an ops token sees and acts on all.
Registering, changing and removing endpoints needs a coordinator or ops token.

(No `from __future__ import annotations` here: FastAPI must see the route annotations,
which refer to names local to create_app.)
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from contracts.base import Identifier
from infra.auth import TokenClaims
from infra.http_auth import claims_dependency, require_role
from services.notifications.destinations import DestinationRefused, check_registered_url
from services.notifications.repository import NotificationsRepository, NotRedeliverableError
from services.notifications.repository import check_event_types as _check_event_types

DeliveryStatus = Literal["pending", "delivered", "dead", "cancelled"]
Description = Annotated[str, Field(max_length=500)]
Secret = Annotated[str, Field(min_length=24, max_length=200, pattern=r"^[\x21-\x7e]+$")]
EventTypes = Annotated[list[str], Field(max_length=50)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointCreate(_Body):
    url: HttpUrl = Field(description="http(s) URL that receives the signed POSTs")
    event_types: EventTypes = Field(
        default_factory=list,
        description="Event types (project.staffed) or <aggregate>.* (project.*); empty: all",
    )
    description: Description = ""
    secret: Secret | None = Field(
        default=None, description="Signing secret; generated when absent (returned once)"
    )
    workspace_id: Identifier | None = Field(
        default=None, description="Ops only: register for another workspace"
    )

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return list(_check_event_types(value))


class EndpointUpdate(_Body):
    url: HttpUrl | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    paused: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(_check_event_types(value))


class EndpointOut(BaseModel):
    endpoint_id: str
    workspace_id: str
    url: str
    event_types: list[str]
    description: str
    paused: bool
    registered_after_seq: int
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="Keep it: it is not shown again")


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    delivery_id: str
    event_id: str
    endpoint_id: str
    workspace_id: str
    sequence: int
    type: str
    status: DeliveryStatus
    attempts: int
    round_attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[AttemptOut] | None = None


class DeadLetterOut(BaseModel):
    delivery_id: str
    endpoint_id: str
    workspace_id: str
    event_id: str
    type: str
    attempts: int
    reason: str
    dead_at: datetime
    redelivered_at: datetime | None


class NotificationOut(BaseModel):
    event_id: str
    workspace_id: str
    sequence: int
    type: str
    members: list[str]
    concerns: list[str]
    created_at: datetime
    published_at: datetime | None
    event: dict[str, Any] = Field(description="The event body, exactly as on the feed")


class Redelivered(BaseModel):
    redelivered: int


def create_app(
    repository: NotificationsRepository,
    token_secret: str,
    *,
    wake: Callable[[], None] = lambda: None,
    allow_private_networks: bool = True,
) -> FastAPI:
    app = FastAPI(
        title="Multifactory notifications",
        description="Webhook endpoints, delivery log and dead letters of a workspace.",
        version="1",
    )
    Claims = Annotated[TokenClaims, Depends(claims_dependency(token_secret))]
    Limit = Annotated[int, Query(ge=1, le=500)]

    def scope(claims: TokenClaims, workspace_id: str | None) -> str | None:
        """The workspace a query is limited to (None: all, for ops)."""
        if claims.role == "ops":
            return workspace_id
        if workspace_id not in (None, claims.workspace_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {claims.role} token of {claims.workspace_id} cannot read {workspace_id}",
            )
        return claims.workspace_id

    def visible(claims: TokenClaims, row: dict[str, Any] | None, what: str) -> dict[str, Any]:
        if row is None or (claims.role != "ops" and row["workspace_id"] != claims.workspace_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what}")
        return row

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/endpoints", status_code=201, response_model=EndpointCreated)
    async def create_endpoint(body: EndpointCreate, claims: Claims) -> dict[str, Any]:
        require_role(claims, "coordinator", "ops")
        workspace_id = body.workspace_id or claims.workspace_id
        if workspace_id != claims.workspace_id and claims.role != "ops":
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "workspace_id: only ops may register for another"
            )
        if not allow_private_networks:
            try:
                check_registered_url(str(body.url))
            except DestinationRefused as refused:
                detail = f"url: {refused}"
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
        endpoint, secret = await repository.create_endpoint(
            workspace_id,
            str(body.url),
            event_types=body.event_types,
            description=body.description,
            secret=body.secret,
        )
        return {**endpoint, "secret": secret}

    @app.get("/webhooks/endpoints", response_model=list[EndpointOut])
    async def list_endpoints(claims: Claims, workspace_id: str | None = None) -> list[dict]:
        return await repository.list_endpoints(scope(claims, workspace_id))

    @app.get("/webhooks/endpoints/{endpoint_id}", response_model=EndpointOut)
    async def get_endpoint(endpoint_id: str, claims: Claims) -> dict[str, Any]:
        return visible(claims, await repository.get_endpoint(endpoint_id), "endpoint")

    @app.patch("/webhooks/endpoints/{endpoint_id}", response_model=EndpointOut)
    async def update_endpoint(
        endpoint_id: str, body: EndpointUpdate, claims: Claims
    ) -> dict[str, Any]:
        visible(claims, await repository.get_endpoint(endpoint_id), "endpoint")
        require_role(claims, "coordinator", "ops")
        updated = await repository.update_endpoint(
            endpoint_id,
            url=None if body.url is None else str(body.url),
            event_types=body.event_types,
            description=body.description,
            paused=body.paused,
        )
        if body.paused is False:
            wake()
        return visible(claims, updated, "endpoint")

    @app.delete("/webhooks/endpoints/{endpoint_id}", status_code=204)
    async def remove_endpoint(endpoint_id: str, claims: Claims) -> Response:
        visible(claims, await repository.get_endpoint(endpoint_id), "endpoint")
        require_role(claims, "coordinator", "ops")
        await repository.remove_endpoint(endpoint_id)
        return Response(status_code=204)

    @app.post("/webhooks/endpoints/{endpoint_id}/redeliver-dead", response_model=Redelivered)
    async def redeliver_dead(endpoint_id: str, claims: Claims) -> dict[str, int]:
        visible(claims, await repository.get_endpoint(endpoint_id), "endpoint")
        require_role(claims, "coordinator", "ops")
        count = await repository.redeliver_dead(endpoint_id)
        wake()
        return {"redelivered": count}

    @app.get("/webhooks/deliveries", response_model=list[DeliveryOut])
    async def list_deliveries(
        claims: Claims,
        workspace_id: str | None = None,
        endpoint_id: str | None = None,
        delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
        event_id: str | None = None,
        before_sequence: Annotated[int | None, Query(ge=1)] = None,
        limit: Limit = 100,
    ) -> list[dict]:
        """The delivery log, newest first; `before_sequence` pages back."""
        return await repository.list_deliveries(
            workspace_id=scope(claims, workspace_id),
            endpoint_id=endpoint_id,
            status=delivery_status,
            event_id=event_id,
            before_sequence=before_sequence,
            limit=limit,
        )

    @app.get("/webhooks/deliveries/{delivery_id}", response_model=DeliveryOut)
    async def get_delivery(delivery_id: str, claims: Claims) -> dict[str, Any]:
        return visible(claims, await repository.get_delivery(delivery_id), "delivery")

    @app.post(
        "/webhooks/deliveries/{delivery_id}/redeliver", status_code=202, response_model=DeliveryOut
    )
    async def redeliver(delivery_id: str, claims: Claims) -> dict[str, Any]:
        visible(claims, await repository.get_delivery(delivery_id), "delivery")
        require_role(claims, "coordinator", "ops")
        try:
            delivery = await repository.redeliver(delivery_id)
        except NotRedeliverableError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
        wake()
        return delivery

    @app.get("/webhooks/dead-letters", response_model=list[DeadLetterOut])
    async def list_dead_letters(
        claims: Claims,
        workspace_id: str | None = None,
        endpoint_id: str | None = None,
        include_redelivered: bool = False,
        limit: Limit = 100,
    ) -> list[dict]:
        return await repository.list_dead_letters(
            workspace_id=scope(claims, workspace_id),
            endpoint_id=endpoint_id,
            include_redelivered=include_redelivered,
            limit=limit,
        )

    @app.get("/notifications", response_model=list[NotificationOut])
    async def list_notifications(
        claims: Claims,
        workspace_id: str | None = None,
        after_sequence: Annotated[int, Query(ge=0)] = 0,
        limit: Limit = 100,
    ) -> list[dict]:
        """What the workspace's feed carried, oldest first from `after_sequence`."""
        workspace = scope(claims, workspace_id)
        if workspace is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "workspace_id: required for ops tokens"
            )
        return await repository.list_notifications(
            workspace, after_sequence=after_sequence, limit=limit
        )

    return app
