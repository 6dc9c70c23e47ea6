"""``python -m dashboards push``: the datasource, folder, dashboards, contact point and alert rules
into a running Grafana through its HTTP API (grafana-client), idempotently.

Every object has a fixed uid. Each is read first and written only when it differs from what the
code builds (what we set must be in Grafana; fields Grafana adds are ignored), so a second push
changes nothing. Dashboards and folders are written with the version just read: if someone saves
in between, Grafana answers 412 and the push stops with :class:`GrafanaConflictError` instead of
overwriting their change blindly; pushing again takes the new version.

grafana-client's exceptions become ours (:mod:`dashboards.exceptions`) in :func:`_calling` only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException, GrafanaTimeoutError

from dashboards import alerts
from dashboards import datasource as influx
from dashboards.builder import JSON
from dashboards.config import Settings
from dashboards.exceptions import (
    ConfigError,
    GrafanaAuthError,
    GrafanaConflictError,
    GrafanaError,
    GrafanaNotFoundError,
    GrafanaUnreachableError,
)
from dashboards.provisioning import dashboards, rule_panel_ids
from telemetry.registry import Registry

logger = logging.getLogger(__name__)

Action = Literal["created", "updated", "unchanged"]
COMMIT_MESSAGE = "python -m dashboards push"


@dataclass(slots=True, frozen=True)
class Change:
    """What the push did to one object."""

    kind: str
    name: str
    action: Action

    def __str__(self) -> str:
        return f"{self.action:9} {self.kind} {self.name}"


class _Client(Protocol):
    """The calls of grafana-client's low-level client that we make (``GrafanaApi.client``)."""

    def GET(self, url: str, params: dict[str, str] | None = None) -> Any: ...  # noqa: N802
    def POST(self, url: str, json: JSON | None = None) -> Any: ...  # noqa: N802
    def PUT(self, url: str, json: JSON | None = None) -> Any: ...  # noqa: N802


def _detail(exc: GrafanaException) -> str:
    body = exc.response
    if isinstance(body, dict):
        message = str(body.get("message") or body)
        status = body.get("status")
        return f"{message} ({status})" if status and status not in message else message
    return str(body or exc.message)


_HINTS = {
    401: "GRAFANA_TOKEN was refused: use a service account token (Administration > Service accounts), "
         "with the Admin role",
    403: "the token's service account lacks a permission: give it the Admin role (datasources need it)",
    404: "check GRAFANA_URL (Grafana's base URL, with its sub-path if it has one); the alerting provisioning "
         "API needs Grafana 9.1 or later",
    409: "an object with this name or uid exists elsewhere in Grafana: rename or delete it",
    412: "it was changed in Grafana while we pushed (or its title is taken in the folder): push again to "
         "take the new version, and move edits made in Grafana into dashboards/*.py",
}


def _translate(action: str, exc: Exception) -> GrafanaError:
    if isinstance(exc, GrafanaTimeoutError):
        return GrafanaUnreachableError(action, 0, f"timed out ({exc.message})", "check GRAFANA_URL and GRAFANA_TIMEOUT")
    if isinstance(exc, GrafanaException) and exc.status_code:
        status, detail = int(exc.status_code), _detail(exc)
        kinds: dict[int, type[GrafanaError]] = {401: GrafanaAuthError, 403: GrafanaAuthError,
                                                404: GrafanaNotFoundError, 409: GrafanaConflictError,
                                                412: GrafanaConflictError}
        return kinds.get(status, GrafanaError)(action, status, detail, _HINTS.get(status, ""))
    return GrafanaUnreachableError(action, 0, str(exc) or type(exc).__name__, "check GRAFANA_URL")


@contextmanager
def _calling(action: str) -> Iterator[None]:
    """Translate grafana-client's errors for ``action`` into :class:`GrafanaError`.

    A refused connection escapes grafana-client as its HTTP library's error, an ``OSError``.
    """
    try:
        yield
    except (GrafanaException, OSError) as exc:
        raise _translate(action, exc) from exc


def contains(current: Any, desired: Any) -> bool:
    """Whether ``current`` holds everything ``desired`` sets (extra keys in ``current`` are ignored)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and contains(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(current, list) and len(current) == len(desired)
                and all(contains(c, d) for c, d in zip(current, desired, strict=True)))
    if isinstance(desired, bool) or isinstance(current, bool):
        return current is desired
    if isinstance(desired, int | float) and isinstance(current, int | float):
        return float(current) == float(desired)
    return bool(current == desired)


class Pusher:
    """Creates or updates each object only when it differs; returns what it did.

    Args:
        client: grafana-client's low-level client (``GrafanaApi.client``).
    """

    def __init__(self, client: _Client) -> None:
        self._client = client

    def _get(self, action: str, path: str, params: dict[str, str] | None = None) -> Any:
        """The object at ``path``, or None when Grafana answers 404."""
        try:
            with _calling(action):
                return self._client.GET(path, params=params) if params else self._client.GET(path)
        except GrafanaNotFoundError:
            return None

    def _write(self, action: str, method: Callable[..., Any], path: str, body: JSON) -> Any:
        with _calling(action):
            return method(path, json=body)

    def datasource(self, body: JSON, secure: JSON) -> Change:
        uid = body["uid"]
        current = self._get(f"GET datasource {uid}", f"/datasources/uid/{uid}")
        if current is None:
            self._write(f"create datasource {uid}", self._client.POST, "/datasources",
                        {**body, "secureJsonData": secure})
            return Change("datasource", uid, "created")
        secrets_set = all(current.get("secureJsonFields", {}).get(key) for key in secure)
        if contains(current, body) and secrets_set:
            return Change("datasource", uid, "unchanged")
        update = {**body, "secureJsonData": secure, "version": current.get("version")}
        self._write(f"update datasource {uid}", self._client.PUT, f"/datasources/uid/{uid}", update)
        return Change("datasource", uid, "updated")

    def folder(self, uid: str, title: str) -> Change:
        current = self._get(f"GET folder {uid}", f"/folders/{uid}")
        if current is None:
            self._write(f"create folder {uid}", self._client.POST, "/folders", {"uid": uid, "title": title})
            return Change("folder", uid, "created")
        if current.get("title") == title:
            return Change("folder", uid, "unchanged")
        self._write(f"update folder {uid}", self._client.PUT, f"/folders/{uid}",
                    {"title": title, "version": current.get("version")})
        return Change("folder", uid, "updated")

    def dashboard(self, doc: JSON, folder_uid: str) -> Change:
        uid = doc["uid"]
        current = self._get(f"GET dashboard {uid}", f"/dashboards/uid/{uid}")
        body: JSON = {"dashboard": doc, "folderUid": folder_uid, "overwrite": False, "message": COMMIT_MESSAGE}
        if current is None:
            self._write(f"create dashboard {uid}", self._client.POST, "/dashboards/db", body)
            return Change("dashboard", uid, "created")
        stored, meta = current.get("dashboard", {}), current.get("meta", {})
        if contains(stored, doc) and meta.get("folderUid") == folder_uid:
            return Change("dashboard", uid, "unchanged")
        body["dashboard"] = {**doc, "id": stored.get("id"), "version": stored.get("version")}
        self._write(f"update dashboard {uid}", self._client.POST, "/dashboards/db", body)
        return Change("dashboard", uid, "updated")

    def contact_point(self, point: JSON) -> Change:
        uid = point["uid"]
        listed = self._get(f"GET contact point {point['name']}", "/v1/provisioning/contact-points",
                           {"name": point["name"]}) or []
        current = next((p for p in listed if p.get("uid") == uid), None)
        if current is None:
            self._write(f"create contact point {uid}", self._client.POST, "/v1/provisioning/contact-points", point)
            return Change("contact point", uid, "created")
        if contains(current, point):
            return Change("contact point", uid, "unchanged")
        self._write(f"update contact point {uid}", self._client.PUT, f"/v1/provisioning/contact-points/{uid}", point)
        return Change("contact point", uid, "updated")

    def rule_group(self, folder_uid: str, group: str, interval_s: int, rules: Sequence[JSON]) -> Change:
        path = f"/v1/provisioning/folder/{folder_uid}/rule-groups/{group}"
        current = self._get(f"GET rule group {group}", path)
        body: JSON = {"title": group, "folderUid": folder_uid, "interval": interval_s, "rules": list(rules)}
        if current is not None and _same_rules(current, body):
            return Change("rule group", group, "unchanged")
        self._write(f"put rule group {group}", self._client.PUT, path, body)
        return Change("rule group", group, "created" if current is None else "updated")


def _same_rules(current: JSON, desired: JSON) -> bool:
    by_uid = {r.get("uid"): r for r in current.get("rules", [])}
    return (current.get("interval") == desired["interval"] and by_uid.keys() == {r["uid"] for r in desired["rules"]}
            and all(contains(by_uid[r["uid"]], r) for r in desired["rules"]))


def push(settings: Settings, registry: Registry, *,
         api: Callable[[str, str, float], _Client] | None = None) -> list[Change]:
    """Push everything to GRAFANA_URL; returns what was created, updated or left as it was.

    Raises:
        ConfigError: GRAFANA_URL or GRAFANA_TOKEN is not set.
        GrafanaError: Grafana refused a call or could not be reached.
    """
    if not settings.grafana_url:
        raise ConfigError("GRAFANA_URL", "required for push: Grafana's base URL, e.g. http://localhost:3000")
    if settings.grafana_token is None:
        raise ConfigError("GRAFANA_TOKEN", "required for push: a Grafana service account token (Admin role)")
    connect = api or _grafana_client
    pusher = Pusher(connect(settings.grafana_url, settings.grafana_token.get_secret_value(), settings.grafana_timeout))
    built = {d.uid: d.to_json() for d in dashboards(registry).values()}
    panels = rule_panel_ids(built)
    changes = [pusher.datasource(*influx.api(settings)), pusher.folder(alerts.FOLDER_UID, alerts.FOLDER_TITLE)]
    changes += [pusher.dashboard(doc, alerts.FOLDER_UID) for doc in built.values()]
    if not settings.alert_webhook_url:
        logger.warning("ALERT_WEBHOOK_URL is not set: the contact point gets the placeholder %s",
                       alerts.PLACEHOLDER_WEBHOOK)
    changes.append(pusher.contact_point(alerts.contact_point_api(settings.alert_webhook_url)))
    changes.append(pusher.rule_group(alerts.FOLDER_UID, alerts.GROUP, alerts.GROUP_INTERVAL_S,
                                     [rule.api(panels[rule.uid]) for rule in alerts.RULES]))
    for change in changes:
        logger.info("%s", change)
    return changes


def _grafana_client(url: str, token: str, timeout: float) -> _Client:
    client: _Client = GrafanaApi.from_url(url, credential=token, timeout=timeout).client
    return client
