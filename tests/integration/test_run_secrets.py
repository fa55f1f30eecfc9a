"""Issue 10 part 5 on the real stack: a run whose target URL carries a password, whose
request sends a bearer token from ``${env:...}`` and a token in its query string leaves none
of the three in any file of its run directory (its logs included), and every directory it
made is 0700 and every file 0600; ``resilience analyse`` and ``report`` keep it so."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.experiment.loader import load_experiment
from resilience.observe.traces import JaegerTraceSource
from resilience.redact import RUN_UMASK_ENV
from resilience.runner.orchestrator import RunOptions, run_experiment
from tests.integration._runs import cli
from tests.integration.conftest import StackHandle

pytestmark = [pytest.mark.integration]

PASSWORD = "pa55word-7Qz"
BEARER = "b3arer-9XkT2-secret"
QUERY_TOKEN = "qt0k3n-4Fv8w"
SECRETS = (PASSWORD, BEARER, QUERY_TOKEN)
BEARER_ENV = "RESILIENCE_TEST_BEARER"
EXPERIMENT = """\
name: secrets-stay-secret
target:
  url: http://user:{password}@{host}
load:
  stages: [{{duration: 5s, users: 2, spawn_rate: 2}}]
  trace_sample: 0.3
  workload:
    wait: {{min: 20ms, max: 40ms}}
    requests:
      - path: /catalog/items?page=1&token={query_token}
        headers:
          Authorization: "Bearer ${{env:{bearer_env}}}"
"""


@pytest.fixture
def shell_umask() -> Iterator[None]:
    """A shell's umask (022) and no RESILIENCE_RUN_UMASK: the defaults must make it private."""
    previous = os.umask(0o022)
    saved = os.environ.pop(RUN_UMASK_ENV, None)
    try:
        yield
    finally:
        os.umask(previous)
        if saved is not None:
            os.environ[RUN_UMASK_ENV] = saved


def _leaks(root: Path) -> list[str]:
    """(file, secret) for every file holding a secret's bytes, in any spelling a writer
    could have used (plain, JSON-escaped, URL-quoted are all the same for these values)."""
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        found.extend(f"{path.relative_to(root)}: {s}" for s in SECRETS if s.encode() in raw)
    return found


def _not_private(root: Path) -> dict[str, str]:
    """Paths whose mode is not 0700 (directories) or 0600 (files)."""
    wrong: dict[str, str] = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            wrong[str(path.relative_to(root))] = oct(mode)
    return wrong


@pytest.mark.usefixtures("shell_umask")
def test_a_run_leaves_no_secret_behind_and_keeps_its_files_private(
    stack: StackHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Password, bearer token and query token appear in no file of the run directory (logs,
    saved traces, reports included) after the run, ``analyse`` and ``report``; 0700/0600."""
    monkeypatch.setenv(BEARER_ENV, BEARER)
    host = stack.gateway_url.split("://", 1)[1]
    source = tmp_path / "secrets.yaml"
    source.write_text(
        EXPERIMENT.format(
            password=PASSWORD, host=host, query_token=QUERY_TOKEN, bearer_env=BEARER_ENV
        ),
        encoding="utf-8",
    )
    experiment = load_experiment(source)
    run_dir = tmp_path / "runs" / "secrets"
    result = run_experiment(experiment, RunOptions(out=run_dir, config=stack.config))

    assert result.status not in ("error", "aborted"), result.reason  # the verdict is not the point
    load = json.loads((run_dir / "load.json").read_text(encoding="utf-8"))
    assert load["endpoints"] == ["GET /catalog/items?page=1&token=***"]
    assert load["requests"] > 20
    index = json.loads((run_dir / "traces" / "index.json").read_text(encoding="utf-8"))
    saved = [tid for tid, entry in index["traces"].items() if entry["status"] == "saved"]
    assert saved, "no trace was saved: the test would not see a token in a span"
    # The evidence had the token before it was written: Jaeger's answer still holds it.
    raw = JaegerTraceSource(stack.jaeger_query_url, timeout=5.0).get(saved[0])
    assert raw is not None and QUERY_TOKEN in json.dumps(raw.raw)
    copy = (run_dir / "experiment.yaml").read_text(encoding="utf-8")
    assert f"Bearer ${{env:{BEARER_ENV}}}" in copy
    assert (run_dir / "logs" / "load-worker-0.log").is_file()
    assert _leaks(run_dir) == []
    assert _not_private(run_dir) == {}
    assert result.journal is not None and PASSWORD not in (result.journal.target or "")

    analysed = cli(stack, "analyse", str(run_dir))
    assert analysed.returncode in (0, 1), analysed.stderr
    reported = cli(stack, "report", str(run_dir))
    assert reported.returncode == 0, reported.stderr
    for output in (analysed, reported):
        assert not [s for s in SECRETS if s in output.stdout + output.stderr]
    assert _leaks(run_dir) == []
    assert _not_private(run_dir) == {}
