"""The compact, streaming analysis gives the verdict and numbers the dense code path gave.

``data/scale/scale-run.tar.gz`` is a synthetic run directory (78 s at 150 req/s, a database
hang, phase marks with split seconds, trace ids, writes, a read-back listing, gathered
series and saved traces) made by ``benchmarks/synth_rundir.py`` from a real smoke run of
db-hang (fragile shop). ``expected-verdict.json`` is what ``resilience analyse`` wrote into
its journal with the dense code path (main before the change, 574fdb9: a 23,552-counter
HdrHistogram per second and endpoint, every trace id and write held). If a change to the analysis' rules
changes this verdict on purpose, re-create the file from ``resilience analyse`` on the
unpacked directory and read the diff: it must be that rule's change and nothing else.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resilience import histogram as hist
from resilience.rundir import load as load_module
from resilience.rundir.load import LoadData, decode_tag
from resilience.runner.rejudge import rejudge

DATA = Path(__file__).parent / "data" / "scale"
VERDICT_KEYS = ("status", "exit_code", "reason", "phases", "slo", "recovery", "checks", "findings")
PERCENTILES = (50.0, 95.0, 99.0, 99.9, 100.0)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    with tarfile.open(DATA / "scale-run.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "scale-run"


def _dense_hlog(path: Path) -> dict[str | None, dict[int, Any]]:
    """latency.hlog read the way the dense code path read it: hdrh's own decode per line."""
    out: dict[str | None, dict[int, Any]] = {}
    for raw in path.read_text().splitlines():
        if not raw or raw[0] in '#"':
            continue
        tag, line = None, raw
        if raw.startswith("Tag="):
            encoded, _, line = raw[4:].partition(",")
            tag = decode_tag(encoded)
        start, _, _, text = line.split(",")
        out.setdefault(tag, {})[round(float(start))] = hist.decode(text)
    return out


def test_verdict_equals_the_dense_code_paths(run_dir: Path) -> None:
    """resilience analyse on the directory writes exactly the verdict the dense path wrote:
    status, reason, phases, SLO values, recovery, checks and every finding's evidence."""
    rejudge(run_dir)
    journal = json.loads((run_dir / "journal.json").read_text())
    expected = json.loads((DATA / "expected-verdict.json").read_text())
    for key in VERDICT_KEYS:
        assert journal[key] == expected[key], key
    assert journal["analysis"]["trace_refs"] == {"read": 2750, "held": 2750}


@pytest.mark.parametrize("rows_at_once", [512, 7])
def test_numbers_equal_dense_histograms_merged(
    run_dir: Path, rows_at_once: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows and per-second series of the compact load data equal hdrh's dense
    histograms merged the old way: percentiles, maxima and totals, to the bucket (also
    when the bulk steps take a few seconds at a time)."""
    monkeypatch.setattr(load_module, "_ROWS_AT_ONCE", rows_at_once)
    load = LoadData.read(run_dir)
    dense = _dense_hlog(run_dir / "latency.hlog")
    rng = np.random.default_rng(5)
    seconds = list(load.seconds)
    windows = [seconds, seconds[: len(seconds) // 3], seconds[40:41], [-5, 10_000]]
    windows += [sorted(rng.choice(seconds, 20, replace=False).tolist()) for _ in range(5)]
    for endpoint in [None, *load.endpoints]:
        per_second = dense[endpoint]
        for window in windows:
            merged = hist.merge(per_second[s] for s in window if s in per_second)
            got, counts, n = load.window(endpoint, window)
            assert n == len(window)
            assert got.total == merged.get_total_count()
            assert got.percentiles_ms(PERCENTILES) == hist.percentiles_ms(merged, PERCENTILES)
            assert got.max_us == (merged.get_max_value() if merged.get_total_count() else 0)
            assert sum(counts.values()) == sum(
                sum(load.counts(endpoint, s).values()) for s in window
            )
        table = load.table(endpoint, seconds, PERCENTILES, above_us=250_000)
        for row, second in enumerate(seconds):
            one = per_second.get(second)
            want = hist.percentiles_ms(one, PERCENTILES) if one is not None else [None] * 5
            got_row = [table.percentiles[p][row] for p in PERCENTILES]
            assert [None if np.isnan(v) else v for v in got_row] == want
            above = hist.count_above(one, 250_000) if one is not None else 0
            assert table.above is not None and table.above[row] == above
