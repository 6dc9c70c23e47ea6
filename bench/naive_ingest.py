"""The naive baseline: one aiomqtt loop that validates each message and POSTs it to /write at once.

Same validation and encoding as ingest (telemetry.codec, ingest.lineprotocol); what it lacks is
batching and the acknowledge-per-batch receive path. Reads MQTT_URL, INFLUX_URL, INFLUX_DB,
MQTT_CLIENT_ID like ingest. Used by bench/ingest_throughput.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiomqtt
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import lineprotocol
from telemetry import registry
from telemetry.codec import Decoder
from telemetry.contract import SUBSCRIPTION
from telemetry.settings import MqttUrl


async def main() -> None:
    url = MqttUrl.parse(os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
    influx = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    db = os.environ.get("INFLUX_DB", "yizhan")
    decoder = Decoder(registry.load())
    async with httpx.AsyncClient(base_url=influx) as http, aiomqtt.Client(
            url.host, url.port, identifier=os.environ.get("MQTT_CLIENT_ID", "naive"), clean_session=False) as client:
        await client.subscribe(SUBSCRIPTION, qos=1)
        print("naive ingest ready", flush=True)
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            out = decoder.decode(str(message.topic), payload)
            if out.station is None:
                continue
            now_ms = int(time.time() * 1000)
            lines = [lineprotocol.reading(out.station, r) for r in out.readings]
            lines += [lineprotocol.reject(r, now_ms) for r in out.rejects]
            if lines:
                await http.post("/write", params={"db": db, "precision": "ms"}, content="\n".join(lines).encode())


if __name__ == "__main__":
    asyncio.run(main())
