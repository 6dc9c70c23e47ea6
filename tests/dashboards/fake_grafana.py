"""A local HTTP server answering the part of Grafana's HTTP API that the push uses, as Grafana's
documentation describes it (status codes, bodies, version checks), and recording every request.

Datasources (``/api/datasources``), folders (``/api/folders``), dashboards (``/api/dashboards``) and
the alerting provisioning API (``/api/v1/provisioning``: contact points, rule groups). Service
account tokens are checked (401 otherwise); stored objects get ids and versions; a dashboard or
folder written with a stale version is refused with 412 ``version-mismatch``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]
Reply = tuple[int, Any]


@dataclass(slots=True)
class Call:
    method: str
    path: str
    body: Any = None

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class FakeGrafana:
    """State and routes; ``fail`` maps ``"METHOD /api/path"`` to a status to answer instead."""

    token: str = "glsa_test_token"
    calls: list[Call] = field(default_factory=list)
    datasources: dict[str, JSON] = field(default_factory=dict)
    folders: dict[str, JSON] = field(default_factory=dict)
    dashboards: dict[str, JSON] = field(default_factory=dict)
    contact_points: dict[str, JSON] = field(default_factory=dict)
    rule_groups: dict[tuple[str, str], JSON] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    after_get: Callable[[str], None] | None = None
    _ids: int = 0

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def handle(self, method: str, target: str, headers: dict[str, str], body: Any) -> Reply:
        parts = urlsplit(target)
        self.calls.append(Call(method, target, body))
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "invalid API key"}
        if f"{method} {parts.path}" in self.fail:
            return self.fail[f"{method} {parts.path}"], {"message": "Not found"}
        for pattern, handler in self._routes():
            m = re.fullmatch(pattern, f"{method} {parts.path}")
            if m:
                reply = handler(*m.groups(), body=body, query=parse_qs(parts.query))
                if method == "GET" and self.after_get is not None:
                    self.after_get(parts.path)
                return reply
        return 404, {"message": "Not found"}

    def _routes(self) -> list[tuple[str, Callable[..., Reply]]]:
        return [
            (r"GET /api/datasources/uid/([^/]+)", self.get_datasource),
            (r"POST /api/datasources", self.create_datasource),
            (r"PUT /api/datasources/uid/([^/]+)", self.update_datasource),
            (r"GET /api/folders/([^/]+)", self.get_folder),
            (r"POST /api/folders", self.create_folder),
            (r"PUT /api/folders/([^/]+)", self.update_folder),
            (r"GET /api/dashboards/uid/([^/]+)", self.get_dashboard),
            (r"POST /api/dashboards/db", self.save_dashboard),
            (r"GET /api/v1/provisioning/contact-points", self.list_contact_points),
            (r"POST /api/v1/provisioning/contact-points", self.create_contact_point),
            (r"PUT /api/v1/provisioning/contact-points/([^/]+)", self.update_contact_point),
            (r"GET /api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", self.get_rule_group),
            (r"PUT /api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", self.put_rule_group),
        ]

    # --- datasources ---------------------------------------------------------------------------

    @staticmethod
    def _public(ds: JSON) -> JSON:
        out = {k: v for k, v in ds.items() if k != "secureJsonData"}
        out["secureJsonFields"] = dict.fromkeys(ds.get("secureJsonData", {}), True)
        return out

    def get_datasource(self, uid: str, **_: Any) -> Reply:
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        return 200, self._public(self.datasources[uid])

    def create_datasource(self, *, body: JSON, **_: Any) -> Reply:
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        ds = {**body, "id": self._id(), "orgId": 1, "version": 1, "readOnly": False, "typeLogoUrl": "x.svg"}
        self.datasources[body["uid"]] = ds
        return 200, {"datasource": self._public(ds), "id": ds["id"], "message": "Datasource added", "name": ds["name"]}

    def update_datasource(self, uid: str, *, body: JSON, **_: Any) -> Reply:
        ds = self.datasources.get(uid)
        if ds is None:
            return 404, {"message": "Data source not found"}
        if body.get("version") is not None and body["version"] != ds["version"]:
            return 409, {"message": "Datasource has already been updated by someone else. Please reload and try again"}
        secure = {**ds.get("secureJsonData", {}), **body.get("secureJsonData", {})}
        ds.update({k: v for k, v in body.items() if k != "version"}, secureJsonData=secure, version=ds["version"] + 1)
        return 200, {"datasource": self._public(ds), "id": ds["id"], "message": "Datasource updated", "name": ds["name"]}

    # --- folders -------------------------------------------------------------------------------

    def get_folder(self, uid: str, **_: Any) -> Reply:
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        return 200, self.folders[uid]

    def create_folder(self, *, body: JSON, **_: Any) -> Reply:
        uid = body.get("uid") or f"f{self._id()}"
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        self.folders[uid] = {"id": self._id(), "uid": uid, "title": body["title"], "url": f"/dashboards/f/{uid}/",
                             "version": 1, "hasAcl": False, "canSave": True}
        return 200, self.folders[uid]

    def update_folder(self, uid: str, *, body: JSON, **_: Any) -> Reply:
        folder = self.folders.get(uid)
        if folder is None:
            return 404, {"message": "folder not found", "status": "not-found"}
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            return 412, {"message": "the folder has been changed by someone else", "status": "version-mismatch"}
        folder.update(title=body["title"], version=folder["version"] + 1)
        return 200, folder

    # --- dashboards ----------------------------------------------------------------------------

    def get_dashboard(self, uid: str, **_: Any) -> Reply:
        stored = self.dashboards.get(uid)
        if stored is None:
            return 404, {"message": "Dashboard not found"}
        doc = stored["dashboard"]
        return 200, {"dashboard": copy.deepcopy(doc), "meta": {
            "type": "db", "slug": doc["title"].lower().replace(" ", "-"), "url": f"/d/{uid}", "version": doc["version"],
            "folderUid": stored["folderUid"], "canSave": True, "provisioned": False}}

    def save_dashboard(self, *, body: JSON, **_: Any) -> Reply:
        doc, folder = copy.deepcopy(body["dashboard"]), body.get("folderUid", "")
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        uid = doc["uid"]
        stored = self.dashboards.get(uid)
        if any(u != uid and d["folderUid"] == folder and d["dashboard"]["title"] == doc["title"]
               for u, d in self.dashboards.items()):
            return 412, {"message": "A dashboard with the same name in the folder already exists", "status": "name-exists"}
        if stored is not None and not body.get("overwrite") and doc.get("version") != stored["dashboard"]["version"]:
            return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
        doc["id"] = stored["dashboard"]["id"] if stored else self._id()
        doc["version"] = stored["dashboard"]["version"] + 1 if stored else 1
        self.dashboards[uid] = {"dashboard": doc, "folderUid": folder}
        return 200, {"id": doc["id"], "uid": uid, "url": f"/d/{uid}", "status": "success", "version": doc["version"],
                     "slug": doc["title"].lower()}

    # --- alerting provisioning -----------------------------------------------------------------

    def list_contact_points(self, *, query: dict[str, list[str]], **_: Any) -> Reply:
        name = query.get("name", [None])[0]
        return 200, [copy.deepcopy(p) for p in self.contact_points.values() if name in (None, p["name"])]

    def create_contact_point(self, *, body: JSON, **_: Any) -> Reply:
        point = {**copy.deepcopy(body), "provenance": "api"}
        self.contact_points[body["uid"]] = point
        return 202, point

    def update_contact_point(self, uid: str, *, body: JSON, **_: Any) -> Reply:
        if uid not in self.contact_points:
            return 404, {"message": "contact point not found"}
        self.contact_points[uid] = {**copy.deepcopy(body), "provenance": "api"}
        return 202, {"message": "contactpoint updated"}

    def get_rule_group(self, folder: str, group: str, **_: Any) -> Reply:
        if (folder, group) not in self.rule_groups:
            return 404, {"message": "rule group does not exist"}
        return 200, copy.deepcopy(self.rule_groups[(folder, group)])

    def put_rule_group(self, folder: str, group: str, *, body: JSON, **_: Any) -> Reply:
        if folder not in self.folders:
            return 400, {"message": "folder does not exist"}
        rules = [{**copy.deepcopy(r), "id": self._id(), "updated": "2026-11-29T08:00:00Z", "provenance": "api",
                  "folderUID": folder, "ruleGroup": group} for r in body["rules"]]
        self.rule_groups[(folder, group)] = {"title": group, "folderUid": folder, "interval": body["interval"],
                                             "rules": rules}
        return 200, self.rule_groups[(folder, group)]


class GrafanaServer:
    """:class:`FakeGrafana` on a free loopback port (``url``), until :meth:`close`."""

    def __init__(self, grafana: FakeGrafana) -> None:
        self.grafana = grafana
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                with lock:
                    status, reply = grafana.handle(self.command, self.path, headers, body)
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
