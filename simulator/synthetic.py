"""``python -m simulator make-registry --stations N``: a synthetic registry for scale tests.

Same format as ``telemetry/stations.yaml`` (and validated by the same parser): N instrumented
stations spread over Pingliang's seven districts like the real ones, a third smart (2-3
chargers, indoor and outdoor sensors) and two thirds visual (one charger, one or two sensors).
Give it to both ingest and the simulator with ``STATIONS_FILE``.
"""

from __future__ import annotations

import json
import random
from typing import Any, Final

import yaml

from telemetry.registry import DISTRICT_CODES, Registry, Station

_CENTRES: Final = {  # district seats, (lat, lon)
    "kongtong": (35.543, 106.665), "huating": (35.218, 106.654), "jingchuan": (35.332, 107.367),
    "lingtai": (35.066, 107.621), "chongxin": (35.302, 107.035), "zhuanglang": (35.203, 106.041),
    "jingning": (35.502, 105.727),
}
_WEIGHTS: Final = {"kongtong": 17, "huating": 6, "jingning": 6, "jingchuan": 5, "lingtai": 4, "zhuanglang": 4,
                   "chongxin": 3}
_CAPACITIES: Final = (8, 10, 12, 15, 20, 24, 30)


def make_registry(stations: int, *, seed: int = 1, as_json: bool = False) -> str:
    """A registry document of ``stations`` reporting stations: YAML text, or JSON (also YAML, read far faster)."""
    if not 1 <= stations <= 999_999:
        raise ValueError("--stations must be between 1 and 999999")
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    districts = list(_WEIGHTS)
    counts = dict.fromkeys(districts, 0)
    for i in range(stations):  # the real proportions, deterministic and exact
        d = districts[i % len(districts)] if stations < len(districts) else rng.choices(
            districts, weights=[_WEIGHTS[x] for x in districts])[0]
        counts[d] += 1
    width = max(3, len(str(max(counts.values()))))
    out: list[dict[str, Any]] = []
    for d in districts:
        lat0, lon0 = _CENTRES[d]
        for n in range(1, counts[d] + 1):
            smart = rng.random() < 1 / 3
            chargers = [{"id": f"C{k}", "sockets": rng.choice((6, 8, 10, 12))}
                        for k in range(1, (rng.choice((2, 3)) if smart else 1) + 1)]
            sensors = ["indoor", "outdoor"] if smart or rng.random() < 0.5 else ["indoor"]
            out.append({
                "id": f"PL-{DISTRICT_CODES[d]}-{n:0{width}d}", "name": f"{d} synthetic station {n}", "district": d,
                "kind": "smart" if smart else "visual", "capacity": rng.choice(_CAPACITIES),
                "location": {"lat": round(lat0 + rng.uniform(-0.08, 0.08), 5),
                             "lon": round(lon0 + rng.uniform(-0.08, 0.08), 5)},
                "chargers": chargers, "sensors": sensors,
            })
    Registry([Station.model_validate(doc) for doc in out])  # what we write must load
    if as_json:
        return json.dumps({"stations": out}, ensure_ascii=False, indent=0) + "\n"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return (f"# Synthetic registry: {stations} reporting stations (python -m simulator make-registry, seed {seed}).\n"
            + yaml.dump({"stations": out}, Dumper=dumper, allow_unicode=True, sort_keys=False,
                        default_flow_style=None, width=120))
