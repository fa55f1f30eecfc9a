"""Unit tests for the fault ledger file and the sweeper of leftovers from killed runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.errors import FaultError
from resilience.faults.ledger import FaultLedger, LedgerEntry, read_ledger, write_ledger
from resilience.faults.sweeper import sweep
from resilience.faults.toxiproxy import Toxic
from resilience.testing.toxiproxy_fake import FakeToxiproxy


def leftover_api() -> FakeToxiproxy:
    api = FakeToxiproxy()
    api.create_proxy("postgres", "127.0.0.1:1", "127.0.0.1:2")
    api.create_proxy("orders", "127.0.0.1:3", "127.0.0.1:4")
    api.add_toxic("postgres", Toxic("resilience-0-timeout", "timeout", attributes={"timeout": 0}))
    api.add_toxic("orders", Toxic("resilience-2-latency", "latency", attributes={"latency": 5}))
    api.add_toxic("orders", Toxic("someone-elses", "latency", attributes={"latency": 5}))
    api.set_enabled("orders", False)
    return api


def entry(key: str, proxy: str, *, toxic: str | None = None, disabled: bool = False) -> LedgerEntry:
    return LedgerEntry(
        key=key,
        proxy=proxy,
        fault_index=0,
        fault_type="x",
        toxic=toxic,
        disabled_proxy=disabled,
        pid=4242,
    )


def test_ledger_round_trips_and_disappears_when_empty(tmp_path: Path) -> None:
    """Entries written are read back; an empty ledger removes the file."""
    path = tmp_path / "state" / "faults.json"
    ledger = FaultLedger(path)
    first = entry("resilience-0-hang", "db", toxic="resilience-0-hang")
    ledger.record(first)
    ledger.record(entry("resilience-1-outage", "db", disabled=True))
    assert [e.key for e in read_ledger(path)] == ["resilience-0-hang", "resilience-1-outage"]
    assert read_ledger(path)[0] == first
    ledger.discard("resilience-0-hang")
    ledger.discard("not-there")
    assert [e.key for e in read_ledger(path)] == ["resilience-1-outage"]
    ledger.clear()
    assert not path.exists()
    assert list(tmp_path.joinpath("state").iterdir()) == []


def test_new_ledger_object_sees_what_a_dead_run_left(tmp_path: Path) -> None:
    """A FaultLedger opened on an existing file starts with its entries."""
    path = tmp_path / "faults.json"
    write_ledger(path, [entry("resilience-0-hang", "db", toxic="resilience-0-hang")])
    assert [e.key for e in FaultLedger(path).entries()] == ["resilience-0-hang"]


@pytest.mark.parametrize(
    "content", ["{not json", "[]", '{"entries": [{"proxy": 1}]}', '{"entries": 3}']
)
def test_corrupt_ledger_reads_as_empty(tmp_path: Path, content: str) -> None:
    """A corrupt ledger is logged and treated as empty rather than crashing the start."""
    path = tmp_path / "faults.json"
    path.write_text(content)
    assert read_ledger(path) == []


def test_unwritable_ledger_is_a_fault_error(tmp_path: Path) -> None:
    """A ledger that cannot be written raises FaultError (so nothing is applied unrecorded)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FaultError, match="cannot write the fault ledger"):
        write_ledger(blocker / "faults.json", [entry("k", "db")])


def test_sweep_removes_our_toxics_everywhere_and_keeps_others(tmp_path: Path) -> None:
    """Every resilience- toxic on every proxy goes, even if the ledger never knew of it."""
    api = leftover_api()
    report = sweep(api, tmp_path / "missing.json")
    assert report.toxics == ("orders/resilience-2-latency", "postgres/resilience-0-timeout")
    assert [t.name for t in api.proxy("orders").toxics] == ["someone-elses"]
    assert api.proxy("postgres").toxics == ()
    assert not api.proxy("orders").enabled, "no ledger and no managed list: left alone"


def test_sweep_reenables_proxies_the_ledger_says_we_disabled(tmp_path: Path) -> None:
    """A proxy recorded as disabled by a run is re-enabled; the ledger is then cleared."""
    api = leftover_api()
    path = tmp_path / "faults.json"
    write_ledger(
        path,
        [
            entry("resilience-1-outage", "orders", disabled=True),
            entry("resilience-3-outage", "gone", disabled=True),
        ],
    )
    report = sweep(api, path)
    assert report.enabled == ("orders",)
    assert api.proxy("orders").enabled
    assert report.ledger_entries == 2 and report.ledger_pids == (4242,)
    assert not path.exists()


def test_sweep_reenables_listed_managed_proxies(tmp_path: Path) -> None:
    """Managed proxies given by the caller are re-enabled even without a ledger."""
    api = leftover_api()
    report = sweep(api, tmp_path / "faults.json", proxies=["orders", "postgres"])
    assert report.enabled == ("orders",)
    assert api.proxy("orders").enabled


def test_sweep_summary_names_what_was_cleaned(tmp_path: Path) -> None:
    """The summary line is what the CLI prints after a killed run."""
    api = leftover_api()
    report = sweep(api, tmp_path / "faults.json", proxies=["orders"])
    assert report.summary() == (
        "swept 2 leftover toxics from a killed run: orders/resilience-2-latency, "
        "postgres/resilience-0-timeout; re-enabled proxies: orders"
    )
    again = sweep(api, tmp_path / "faults.json", proxies=["orders"])
    assert again.clean and again.summary() == "no leftover faults"


def test_sweep_keeps_the_ledger_when_something_could_not_be_cleaned(tmp_path: Path) -> None:
    """If a removal fails, the failure is reported and the ledger kept for the next sweep."""
    api = leftover_api()
    path = tmp_path / "faults.json"
    write_ledger(path, [entry("resilience-0-timeout", "postgres", toxic="resilience-0-timeout")])
    api.fail_on("remove_toxic", times=1, when=lambda args: args[0] == "postgres")
    report = sweep(api, path)
    assert report.toxics == ("orders/resilience-2-latency",)
    assert len(report.failures) == 1 and "postgres/resilience-0-timeout" in report.failures[0]
    assert path.exists()
    assert "could not clean" in report.summary()


def test_sweep_without_toxiproxy_is_a_fault_error(tmp_path: Path) -> None:
    """When Toxiproxy cannot list its proxies the sweep raises FaultError."""
    api = leftover_api()
    api.fail_on("proxies")
    with pytest.raises(FaultError, match="cannot sweep leftover faults"):
        sweep(api, tmp_path / "faults.json")
