"""Process settings, from MF_* environment variables. Read only by wiring code."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.subjects import DEFAULT_ROOT, DEFAULT_STREAM


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MF_", extra="ignore")

    # Unset URLs mean "start the embedded servers", keeping data under data_dir.
    nats_url: str | None = None
    database_url: str | None = None
    data_dir: Path = Path(".mf-data")

    stream: str = DEFAULT_STREAM
    stream_replicas: int = Field(default=1, ge=1, le=5)
    subject_root: str = DEFAULT_ROOT
    # Prepended to every PostgreSQL schema name (tests use a unique one per run).
    schema_prefix: str = ""

    http_host: str = "127.0.0.1"
    http_port: int = 8000  # the projects API and live page
    # False: `mf serve projects` leaves the live-view projection to `mf serve projects-view`
    projects_view_in_api: bool = True
    notifications_http_port: int = 8001  # webhooks and delivery log API
    matching_http_port: int = 8002  # matching's /metrics
    # False on shared deployments: webhooks may not reach loopback/private/link-local
    # addresses (services/notifications/destinations.py). True suits a laptop.
    webhook_allow_private_networks: bool = True
    # Secret that signs bearer tokens; generated and kept in data_dir when unset.
    token_secret: str | None = None

    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def schema(self, name: str) -> str:
        return f"{self.schema_prefix}{name}"
