"""Grafana dashboards and alert rules as code (``python -m dashboards build|push``).

The dashboards (overview, station, pipeline, completeness) and alert rules are built by the
modules named after them into ``dashboards/provisioning/``, which Grafana provisions from; ``push``
sends the same objects to a running Grafana. See docs/dashboards.md.
"""
