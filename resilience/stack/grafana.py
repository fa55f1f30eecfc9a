"""A Grafana dashboard of a run: the load's own metrics, faults as annotations, the target's.

The dashboard reads the series a run exports live (``resilience_load_*``,
``resilience_fault_active``, ``resilience_run_phase``; resilience/runner/live_export.py) and
the shop's ``shop_*`` metrics from the same Prometheus, on one time axis. Faults are
annotations (from ``resilience_fault_active == 1``) and a state timeline. The committed
file ``grafana/resilience-dashboard.json`` is this generator's output (a unit test holds
them equal) and docker-compose.yml provisions it into its Grafana with the datasources
below.
"""

from __future__ import annotations

import json

DASHBOARD_FILE = "grafana/resilience-dashboard.json"
DASHBOARD_UID = "resilience-run"
PROMETHEUS_UID = "resilience-prometheus"
JAEGER_UID = "resilience-jaeger"
RUN = 'run=~"$run"'

_PROMETHEUS = {"type": "prometheus", "uid": PROMETHEUS_UID}


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, object]:
    return {"datasource": _PROMETHEUS, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(
    panel_id: int,
    title: str,
    targets: list[dict[str, object]],
    *,
    unit: str,
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
) -> dict[str, object]:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": _PROMETHEUS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


def dashboard() -> dict[str, object]:
    """The dashboard model (Grafana's JSON, schemaVersion 39)."""
    panels = [
        _panel(1, "Load: requests per second by endpoint", [
            _target(f"sum by (endpoint) (rate(resilience_load_requests_total{{{RUN}}}[5s]))",
                    "{{endpoint}}"),
        ], unit="reqps", x=0, y=0),
        _panel(2, "Load: errors per second by outcome", [
            _target(f"sum by (outcome) (rate(resilience_load_errors_total{{{RUN}}}[5s]))",
                    "{{outcome}}"),
        ], unit="reqps", x=12, y=0),
        _panel(3, "Load: p95 latency by endpoint (client side)", [
            _target("histogram_quantile(0.95, sum by (le, endpoint) "
                    f"(rate(resilience_load_latency_seconds_bucket{{{RUN}}}[10s])))",
                    "{{endpoint}}"),
        ], unit="s", x=0, y=8),
        _panel(4, "Faults in effect", [
            _target(f"max by (proxy, type) (resilience_fault_active{{{RUN}}})",
                    "{{type}} on {{proxy}}"),
            _target(f"max by (phase) (resilience_run_phase{{{RUN}}})", "phase {{phase}}", "B"),
        ], unit="short", x=12, y=8, kind="state-timeline"),
        _panel(5, "Target: server-side p95 by service and route", [
            _target("histogram_quantile(0.95, sum by (le, job, route) "
                    "(rate(shop_http_request_duration_seconds_bucket[10s])))",
                    "{{job}} {{route}}"),
        ], unit="s", x=0, y=16),
        _panel(6, "Target: pools (in use and waiting)", [
            _target("sum by (service) (shop_db_pool_in_use)", "db in use {{service}}"),
            _target("sum by (service) (shop_db_pool_waiting)", "db waiting {{service}}", "B"),
            _target("sum by (pool) (shop_upstream_pool_waiting)", "upstream waiting {{pool}}",
                    "C"),
        ], unit="short", x=12, y=16),
        _panel(7, "Load and target together: load req/s against target 5xx/s", [
            _target(f"sum(rate(resilience_load_requests_total{{{RUN}}}[5s]))", "load req/s"),
            _target("sum(rate(shop_http_errors_total[5s]))", "target 5xx/s", "B"),
            _target(f"sum(rate(resilience_load_errors_total{{{RUN}}}[5s]))", "load errors/s", "C"),
        ], unit="reqps", x=0, y=24, w=24),
    ]  # fmt: skip
    return {
        "uid": DASHBOARD_UID,
        "title": "resilience: load, faults and target",
        "description": "A resilience run or game day: the load engine's own metrics, the "
        "faults it injected (annotations) and the target's metrics on one time axis.",
        "tags": ["resilience", "chaos", "load"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timezone": "utc",
        "templating": {
            "list": [
                {
                    "name": "run",
                    "label": "run",
                    "type": "query",
                    "datasource": _PROMETHEUS,
                    "query": {"query": "label_values(resilience_run_info, run)", "refId": "run"},
                    "definition": "label_values(resilience_run_info, run)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                    "sort": 2,
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Faults",
                    "enable": True,
                    "iconColor": "red",
                    "datasource": _PROMETHEUS,
                    "expr": f"resilience_fault_active{{{RUN}}} == 1",
                    "step": "1s",
                    "titleFormat": "{{type}} on {{proxy}}",
                    "textFormat": "fault {{fault}} of run {{run}}",
                    "tagKeys": "proxy,type",
                    "useValueForTime": False,
                }
            ]
        },
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def datasources(prometheus_url: str, jaeger_url: str) -> dict[str, object]:
    """Grafana's datasource provisioning file: the stack's Prometheus and Jaeger."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "resilience Prometheus",
                "uid": PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "jsonData": {"timeInterval": "1s"},
            },
            {
                "name": "resilience Jaeger",
                "uid": JAEGER_UID,
                "type": "jaeger",
                "access": "proxy",
                "url": jaeger_url,
            },
        ],
    }


def dashboard_provider(path: str) -> dict[str, object]:
    """Grafana's dashboard provisioning file: load the dashboards in ``path``."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "resilience",
                "type": "file",
                "disableDeletion": False,
                "updateIntervalSeconds": 30,
                "allowUiUpdates": True,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }
