"""JSON Schema of the wire contract, generated from the models (never written by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from telemetry.contract import MAX_BATCH, MODELS, TELEMETRY_KINDS, Kind


def schemas() -> dict[str, dict[str, Any]]:
    """One schema per topic kind; telemetry kinds accept one reading or a batch of 1..1000."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in MODELS.items():
        schema = model.model_json_schema()
        if kind in TELEMETRY_KINDS:
            batch = TypeAdapter(list[model]).json_schema()  # type: ignore[valid-type]
            batch.update(minItems=1, maxItems=MAX_BATCH)
            schema = {"title": f"stations/v1/{{station_id}}/{kind.value}", "oneOf": [schema, batch]}
        else:
            schema["title"] = f"stations/v1/{{station_id}}/{kind.value}"
        out[f"{kind.value}.schema.json"] = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


__all__ = ["Kind", "render", "schemas", "write"]
