# One image for the Python services: ingest, gateway, simulator, the report scheduler (and `dashboards push`).
# The command names the service: `docker run yizhan ingest`, `... gateway`, `... simulator --backfill 24h`.
FROM python:3.11-slim AS wheels
WORKDIR /src
COPY pyproject.toml ./
COPY telemetry telemetry
COPY ingest ingest
COPY gateway gateway
COPY firmware_stubs firmware_stubs
COPY simulator simulator
COPY dashboards dashboards
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# the report's CJK font (docs/reports.md)
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/yizhan yizhan \
 && mkdir -p /var/lib/yizhan/spool /var/lib/yizhan/gateway /var/lib/yizhan/reports /mosquitto/auth \
 && chown yizhan /mosquitto/auth \
 && chown -R yizhan: /var/lib/yizhan
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER yizhan
WORKDIR /var/lib/yizhan
ENTRYPOINT ["python", "-m"]
CMD ["ingest"]
