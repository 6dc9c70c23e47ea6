"""Errors of ``python -m dashboards``::

    DashboardsError
     ├── ConfigError                  push needs a setting that is missing (.variable)
     ├── ReportError                  the report's rollups could not be read from InfluxDB
     └── GrafanaError                 Grafana refused a call or could not be reached (.action, .status)
          ├── GrafanaUnreachableError no answer: connection refused, timeout, TLS
          ├── GrafanaAuthError        401 or 403: GRAFANA_TOKEN refused, or lacking a permission
          ├── GrafanaNotFoundError    404 on a write: a wrong GRAFANA_URL, or an API this Grafana lacks
          └── GrafanaConflictError    409 or 412: changed in Grafana meanwhile (version-mismatch), or a
                                      title or uid taken by another object

grafana-client's exceptions are translated to these in ``push.py`` only; the InfluxDB reader's in
``report/data.py``.
"""

from __future__ import annotations


class DashboardsError(Exception):
    """Base of the errors of ``python -m dashboards``."""


class ConfigError(DashboardsError):
    """A setting that push needs is missing."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class GrafanaError(DashboardsError):
    """Grafana refused a call (``status``) or could not be reached (``status`` 0).

    Args:
        action: what we were doing, e.g. ``PUT dashboard yizhan-overview``.
        status: the HTTP status, 0 without an answer.
        detail: Grafana's message.
    """

    def __init__(self, action: str, status: int, detail: str, hint: str = "") -> None:
        what = f"HTTP {status}" if status else "no answer"
        message = f"{action}: Grafana answered {what}: {detail}" if status else f"{action}: {what}: {detail}"
        super().__init__(f"{message}. {hint}" if hint else message)
        self.action = action
        self.status = status
        self.detail = detail


class GrafanaUnreachableError(GrafanaError):
    """No answer from GRAFANA_URL."""


class GrafanaAuthError(GrafanaError):
    """401 or 403."""


class GrafanaNotFoundError(GrafanaError):
    """404 where the object or API must exist."""


class GrafanaConflictError(GrafanaError):
    """409 or 412: a version conflict, or a name or uid taken."""


class ReportError(DashboardsError):
    """The report's figures could not be read (InfluxDB down or refusing a query)."""
