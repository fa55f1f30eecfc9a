"""An experiment's proxies created before its service starts (``proxies up/down``), and its
own Prometheus scrape jobs written into the stack's configuration for a run."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from resilience.errors import ExperimentError
from resilience.experiment import Experiment, parse_experiment
from resilience.runner.target import (
    PreparedTarget,
    add_scrape_jobs,
    proxies_down,
    proxies_up,
    remove_scrape_jobs,
)
from resilience.stack import Ports, Stack, StackConfig
from resilience.stack.generate import PROMETHEUS_JOBS, prometheus_config
from resilience.stack.state import load_scrape_jobs, save_scrape_jobs
from resilience.testing.toxiproxy_fake import FakeToxiproxy
from resilience.vocabulary import STACK_SCRAPE_JOBS

FILE = """
name: external
target: {url: "http://127.0.0.1:9000"}
proxies:
  - {name: db, listen: "127.0.0.1:25999", upstream: "127.0.0.1:5432"}
  - {name: cache, listen: "localhost:26999", upstream: "127.0.0.1:6379"}
observe:
  scrape:
    - {job: api, url: "http://127.0.0.1:9001/metrics"}
    - {job: worker, url: "https://localhost:9002/internal/metrics?format=prometheus"}
load:
  stages: [{duration: 30s, users: 1, spawn_rate: 1}]
  workload: {requests: [{path: /}]}
"""


def experiment(text: str = FILE) -> Experiment:
    return parse_experiment(textwrap.dedent(text), file="external.yaml")


def test_proxies_up_creates_then_keeps() -> None:
    """First call creates both; the second keeps them (localhost = 127.0.0.1) and changes
    nothing."""
    toxiproxy = FakeToxiproxy()
    first = proxies_up(experiment(), toxiproxy)
    assert [(c.name, c.action) for c in first] == [("db", "created"), ("cache", "created")]
    second = proxies_up(experiment(), toxiproxy)
    assert [(c.name, c.action) for c in second] == [("db", "kept"), ("cache", "kept")]
    assert len(toxiproxy.calls_to("create_proxy")) == 2


def test_a_disabled_leftover_is_enabled_again() -> None:
    """A declared proxy a killed run left disabled is enabled, not duplicated."""
    toxiproxy = FakeToxiproxy()
    proxies_up(experiment(), toxiproxy)
    toxiproxy.set_enabled("db", False)
    changes = proxies_up(experiment(), toxiproxy)
    assert changes[0].action == "enabled"
    assert toxiproxy.proxy("db").enabled


def test_a_conflicting_proxy_is_refused_before_anything_changes() -> None:
    """db exists with another upstream: exit-2 error naming both; cache is not created."""
    toxiproxy = FakeToxiproxy()
    toxiproxy.create_proxy("db", "127.0.0.1:25999", "127.0.0.1:6543")
    with pytest.raises(ExperimentError) as info:
        proxies_up(experiment(), toxiproxy)
    assert info.value.exit_code == 2
    assert "proxy 'db' exists as 127.0.0.1:25999 -> 127.0.0.1:6543" in str(info.value)
    assert "the file wants 127.0.0.1:25999 -> 127.0.0.1:5432" in str(info.value)
    assert set(toxiproxy.proxies()) == {"db"}


def test_a_listen_address_taken_by_another_proxy_is_a_conflict() -> None:
    """Another proxy already listening on db's address is named."""
    toxiproxy = FakeToxiproxy()
    toxiproxy.create_proxy("other", "127.0.0.1:25999", "127.0.0.1:1")
    with pytest.raises(ExperimentError, match="already the listen address of proxy 'other'"):
        proxies_up(experiment(), toxiproxy)


def test_proxies_down_deletes_only_the_files_own(tmp_path: Path) -> None:
    """Deleted when as declared; left when other addresses or the stack's own proxy."""
    config = StackConfig.from_env()
    pg = f"127.0.0.1:{config.ports.postgres_proxy}"
    text = FILE.replace(
        '  - {name: cache, listen: "localhost:26999", upstream: "127.0.0.1:6379"}\n',
        '  - {name: cache, listen: "localhost:26999", upstream: "127.0.0.1:6379"}\n'
        f'  - {{name: postgres, listen: "{pg}", upstream: "127.0.0.1:5432"}}\n'
        '  - {name: gone, listen: "127.0.0.1:27999", upstream: "127.0.0.1:1"}\n',
    )
    toxiproxy = FakeToxiproxy()
    toxiproxy.create_proxy("db", "127.0.0.1:25999", "127.0.0.1:5432")
    toxiproxy.create_proxy("cache", "127.0.0.1:26999", "127.0.0.1:7000")
    toxiproxy.create_proxy("postgres", pg, "127.0.0.1:5432")
    changes = proxies_down(experiment(text), toxiproxy, config)
    assert [(c.name, c.action) for c in changes] == [
        ("db", "deleted"),
        ("cache", "left"),
        ("postgres", "left"),
        ("gone", "absent"),
    ]
    assert "not the file's" in changes[1].note
    assert "the stack's own" in changes[2].note
    assert set(toxiproxy.proxies()) == {"cache", "postgres"}


def test_scrape_jobs_go_into_prometheus_yml() -> None:
    """Each job after the stack's: scheme, metrics path, target, query params."""
    jobs = {j.job: j.url for j in experiment().scrape_jobs()}
    config = prometheus_config(Ports(), extra_jobs=jobs)
    extra = config["scrape_configs"][-2:]
    assert extra == [
        {
            "job_name": "api",
            "scheme": "http",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": ["127.0.0.1:9001"]}],
        },
        {
            "job_name": "worker",
            "scheme": "https",
            "metrics_path": "/internal/metrics",
            "static_configs": [{"targets": ["localhost:9002"]}],
            "params": {"format": ["prometheus"]},
        },
    ]
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    with pytest.raises(ValueError, match="one of the stack's own"):
        prometheus_config(Ports(), extra_jobs={"gateway": "http://127.0.0.1:1/metrics"})


def test_the_file_knows_every_job_name_of_the_stack() -> None:
    """vocabulary.STACK_SCRAPE_JOBS (which the file refuses) are generate.py's jobs."""
    assert set(STACK_SCRAPE_JOBS) == set(PROMETHEUS_JOBS)


def test_scrape_jobs_file_round_trips_and_empties(tmp_path: Path) -> None:
    """Saved jobs load back; saving none removes the file."""
    path = tmp_path / "etc" / "scrape-jobs.json"
    assert load_scrape_jobs(path) == {}
    save_scrape_jobs(path, {"b": "http://127.0.0.1:2/metrics", "a": "http://127.0.0.1:1/m"})
    assert load_scrape_jobs(path) == {
        "a": "http://127.0.0.1:1/m",
        "b": "http://127.0.0.1:2/metrics",
    }
    save_scrape_jobs(path, {})
    assert not path.exists()


class FakeStack:
    """The two Stack methods the run uses for scrape jobs, with a record of reloads."""

    def __init__(self, jobs: dict[str, str]) -> None:
        self.jobs = dict(jobs)
        self.reloads: list[dict[str, str]] = []

    def scrape_jobs(self) -> dict[str, str]:
        return dict(self.jobs)

    def set_scrape_jobs(self, jobs: dict[str, str]) -> bool:
        self.jobs = dict(jobs)
        self.reloads.append(dict(jobs))
        return True


def prepared(stack: FakeStack) -> PreparedTarget:
    return PreparedTarget(
        url="http://127.0.0.1:9000",
        builtin=False,
        config=StackConfig.from_env(),
        stack=cast(Stack, stack),
        toxiproxy=cast(Any, None),
        proxies=[],
    )


def test_a_run_adds_its_jobs_and_takes_exactly_them_out() -> None:
    """Jobs already there as wanted stay; a job of the same name with another URL gets its
    old URL back at the end; other jobs are untouched."""
    stack = FakeStack(
        {"api": "http://127.0.0.1:9001/metrics", "worker": "http://old:1/m", "x": "http://y/m"}
    )
    target = prepared(stack)
    messages: list[str] = []
    add_scrape_jobs(target, experiment(), messages.append)
    assert stack.jobs["worker"].startswith("https://localhost:9002")
    assert target.scrape_added == {"worker": stack.jobs["worker"]}
    assert "Prometheus reloaded" in messages[0]
    remove_scrape_jobs(target)
    assert stack.jobs == {
        "api": "http://127.0.0.1:9001/metrics",
        "worker": "http://old:1/m",
        "x": "http://y/m",
    }
    assert len(stack.reloads) == 2


def test_a_run_without_scrape_jobs_leaves_prometheus_alone() -> None:
    """No observe.scrape: no reload."""
    stack = FakeStack({})
    start, end = FILE.index("observe:"), FILE.index("load:")
    text = FILE[:start] + FILE[end:]
    add_scrape_jobs(prepared(stack), experiment(text), lambda _m: None)
    assert stack.reloads == []


def test_a_run_refuses_to_re_point_a_conflicting_proxy() -> None:
    """The run's own proxy set-up is proxies up: a declared proxy that exists with other
    addresses stops it (exit 2) instead of being silently re-pointed."""
    from resilience.runner.target import _ensure_declared_proxies

    toxiproxy = FakeToxiproxy()
    toxiproxy.create_proxy("db", "127.0.0.1:25999", "127.0.0.1:6543")
    with pytest.raises(ExperimentError, match="proxy 'db' exists as"):
        _ensure_declared_proxies(cast(Any, toxiproxy), experiment())
    assert toxiproxy.proxy("db").upstream == "127.0.0.1:6543"
    toxiproxy.delete_proxy("db")
    assert _ensure_declared_proxies(cast(Any, toxiproxy), experiment()) == ["db", "cache"]
