"""Reading a run directory and `resilience report`: rebuilt from files alone, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resilience.cli import app
from resilience.errors import ExperimentError
from resilience.report import read_run, write_reports
from resilience.testing.sample_run import CASCADE_TRACE, TIMEOUT_TRACE, write_sample_run


def test_report_command_rebuilds_everything_from_the_directory(tmp_path: Path) -> None:
    """`resilience report DIR` writes the three reports using only what DIR holds."""
    write_sample_run(tmp_path)
    for name in ("report.html", "junit.xml", "summary.md"):
        assert not (tmp_path / name).exists()
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "failed (exit code 1)" in result.output
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="chart-throughput"' in html  # load data read back from latency.hlog/load.jsonl
    assert "fault GET /catalog/items p95 2550 ms &gt; 500 ms" in html
    assert (tmp_path / "junit.xml").read_text(encoding="utf-8").startswith("<?xml")
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith("### ")


def test_load_data_from_files_matches_memory(tmp_path: Path) -> None:
    """The report from the files on disk equals the report from the in-memory load data."""
    view = write_sample_run(tmp_path)
    from_memory = write_reports(tmp_path, load=view).html.read_text(encoding="utf-8")
    from_files = write_reports(tmp_path).html.read_text(encoding="utf-8")
    assert from_files == from_memory


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: (d / "journal.json").unlink(), "journal.json"),
        (lambda d: (d / "journal.json").write_text("{not json", encoding="utf-8"), "journal.json"),
        (
            lambda d: (d / "journal.json").write_text(
                json.dumps({"status": "x"}), encoding="utf-8"
            ),
            "journal.json",
        ),
        (lambda d: (d / "experiment.yaml").unlink(), "experiment.yaml"),
        (
            lambda d: (d / "experiment.yaml").write_text("a: [1,\n", encoding="utf-8"),
            "experiment.yaml",
        ),
        (
            lambda d: (d / "latency.hlog").write_text("garbage\x00", encoding="utf-8"),
            "latency.hlog",
        ),
    ],
)
def test_damaged_run_directory_is_invalid_input(tmp_path: Path, damage: object, named: str) -> None:
    """A missing or corrupt defining file is an ExperimentError (exit 2) naming the file."""
    write_sample_run(tmp_path)
    damage(tmp_path)  # type: ignore[operator]
    if named == "latency.hlog":
        (tmp_path / "load.jsonl").write_text("{broken\n[1]\n", encoding="utf-8")
    with pytest.raises(ExperimentError, match=named.replace(".", r"\.")):
        write_reports(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert named in result.output


def test_missing_directory(tmp_path: Path) -> None:
    """A directory that does not exist is named in the error."""
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_bad_evidence_is_listed_not_fatal(tmp_path: Path) -> None:
    """An unreadable trace or series file is shown as a problem; the rest of the report stands."""
    view = write_sample_run(tmp_path, load_files=False)
    (tmp_path / "traces" / f"{CASCADE_TRACE}.json").write_text("{oops", encoding="utf-8")
    (tmp_path / "prometheus" / "pool-in-use.json").write_text("[]", encoding="utf-8")
    html = write_reports(tmp_path, load=view).html.read_text(encoding="utf-8")
    assert "id='problems'" in html
    assert f"traces/{CASCADE_TRACE}.json: unreadable" in html
    assert "prometheus/pool-in-use.json: unreadable" in html
    # The timeout finding's trace is still drawn; the cascade's cannot be.
    assert html.count('class="chart waterfall"') == 1
    assert f"Trace {TIMEOUT_TRACE}" in html


def test_series_and_traces_read_on_demand(tmp_path: Path) -> None:
    """Series times move to the experiment clock; traces are found by hex or base64 id."""
    write_sample_run(tmp_path, load_files=False)
    run = read_run(tmp_path)
    series = run.series_for("pool-saturated")
    assert series is not None
    assert series.promql == "max(shop_db_pool_waiting)"
    assert series.series[0].points[0][0] == pytest.approx(0.0)
    assert run.series_for("prometheus/pool-saturated.json") is series
    assert run.series_for("absent.json") is None
    trace = run.trace(CASCADE_TRACE)
    assert trace is not None
    assert len(trace.spans) == 5
    assert (
        run.trace("S/kvNXezTaajzpKdDg5HNg==") is trace
        or run.trace("S/kvNXezTaajzpKdDg5HNg==") == trace
    )
    assert run.trace("ffffffffffffffffffffffffffffffff") is None
    assert run.problems == []
