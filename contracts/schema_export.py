"""JSON Schema of every event (and the envelope), for consumers written in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.envelope import Envelope
from contracts.registry import EVENT_CLASSES


def json_schemas() -> dict[str, dict]:
    """File name -> JSON Schema. Each event schema describes the `data` object plus its
    pinned `type`; `x-schema-version` says which version it describes."""
    schemas = {"envelope.schema.json": Envelope.model_json_schema()}
    for cls in EVENT_CLASSES:
        schema = cls.model_json_schema(by_alias=True)
        schema["x-schema-version"] = cls.schema_version
        schema["x-subject"] = f"mf.events.{cls.aggregate()}.<id>.{cls.event_name()}"
        schemas[f"{cls.event_type()}.v{cls.schema_version}.schema.json"] = schema
    return schemas


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
