"""The committed JSON Schema files are what the contract's models generate, and they agree with it."""

from __future__ import annotations

import json

from telemetry import schema
from tests.rig import ROOT


def test_schema_files_are_generated_from_the_contract() -> None:
    for name, generated in schema.schemas().items():
        path = ROOT / "docs" / "schema" / name
        assert path.read_text(encoding="utf-8") == schema.render(generated), (
            f"{path} is stale: run python -m telemetry schema")


def test_schema_occupancy_describes_single_and_batch() -> None:
    doc = json.loads((ROOT / "docs" / "schema" / "occupancy.schema.json").read_text())
    single, batch = doc["oneOf"]
    assert set(single["required"]) == {"ts", "seq", "people"}
    assert single["additionalProperties"] is False
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
