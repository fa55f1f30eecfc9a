"""Profiles (deep merge over the base document) and --set overrides."""

from __future__ import annotations

import textwrap

import pytest

from resilience.errors import ExperimentError
from resilience.experiment import parse_experiment
from resilience.experiment._overlay import (
    Origin,
    Origins,
    apply_overrides,
    deep_merge,
    parse_key_path,
    parse_overrides,
)
from resilience.experiment._problems import InputProblems

BASE = textwrap.dedent(
    """\
    name: demo
    tags: [a, b]
    load:
      stages: [{duration: 4m, users: 50, spawn_rate: 5}]
      client_timeout: 10s
      workload:
        wait: {min: 500ms, max: 1500ms}
        requests:
          - {name: list, path: /catalog/items, weight: 4}
          - {name: one, path: "/catalog/items/{int:1:50}", weight: 3}
    faults:
      - {at: 1m, duration: 1m, proxy: postgres, type: latency, attributes: {latency: 800ms}}
      - {at: 2m, duration: 30s, proxy: catalog, type: outage}
    slo:
      baseline: {p95: 500ms, error_rate: 0.1%}
    profiles:
      smoke:
        load:
          stages: [{duration: 40s, users: 10, spawn_rate: 10}]
          client_timeout: 5s
        faults: [{at: 10s, duration: 12s}, {at: 25s, duration: 5s}]
      nofaults:
        faults: []
      retime:
        faults: [null, {at: 30s}]
      preset:
        load: {stages: null, preset: normal}
        tags: [c]
      bad:
        load: {stages: [{users: many}]}
    """
)


def test_smoke_profile_merges_lists_by_index() -> None:
    """faults: [{at, duration}] retimes each fault and keeps its type, proxy and attributes."""
    experiment = parse_experiment(BASE, profile="smoke")
    first, second = experiment.faults
    assert (first.at, first.duration, first.type, first.proxy) == (10, 12, "latency", "postgres")
    assert first.attributes == {"latency": 800}
    assert (second.at, second.duration, second.type) == (25, 5, "outage")
    assert experiment.total_duration == 40
    assert experiment.load.client_timeout == 5
    assert experiment.load.workload.wait.max == 1.5
    assert experiment.profile == "smoke"


def test_base_is_untouched_by_profiles() -> None:
    """Loading the base after a profile gives the base values."""
    parse_experiment(BASE, profile="smoke")
    experiment = parse_experiment(BASE)
    assert experiment.total_duration == 240
    assert experiment.profile is None
    assert set(experiment.profiles) == {"smoke", "nofaults", "retime", "preset", "bad"}


def test_empty_list_replaces() -> None:
    """An empty list in a profile clears the base list."""
    assert parse_experiment(BASE, profile="nofaults").faults == []


def test_null_item_removes_and_later_items_merge() -> None:
    """A null list item drops that item; the next item still merges with its own base item."""
    (only,) = parse_experiment(BASE, profile="retime").faults
    assert (only.at, only.type, only.proxy) == (30, "outage", "catalog")


def test_null_removes_a_key_and_scalars_lists_replace() -> None:
    """stages: null makes room for a preset; a list of strings is replaced, not merged."""
    experiment = parse_experiment(BASE, profile="preset")
    assert experiment.load.preset == "normal"
    assert experiment.load.stages is None
    assert experiment.tags == ["c"]


def test_profile_problems_name_the_profile_and_line() -> None:
    """A bad value written in a profile points at the profile's line."""
    with pytest.raises(ExperimentError) as info:
        parse_experiment(BASE, profile="bad", file="demo.yaml")
    text = str(info.value)
    assert text.startswith("demo.yaml:30, at load.stages[0].users")
    assert "(profile 'bad')" in text


def test_override_after_profile() -> None:
    """--set applies after the profile and can address list items by index."""
    experiment = parse_experiment(
        BASE, profile="smoke", overrides=["faults.0.duration=20s", "load.workers=2"]
    )
    assert experiment.faults[0].duration == 20
    assert experiment.faults[0].at == 10
    assert experiment.load.workers == 2


def test_override_creates_missing_mappings_and_quoted_keys() -> None:
    """--set builds missing mappings and accepts quoted keys with spaces and brackets."""
    experiment = parse_experiment(
        BASE,
        overrides=[
            "shop.mode=hardened",
            'slo.fault.endpoints."list".p95=1s',
            "faults[0].toxicity=50%",
        ],
    )
    assert experiment.shop is not None and experiment.shop.mode == "hardened"
    assert experiment.slo.fault is not None
    assert experiment.slo.fault.endpoints["list"].p95 == 1
    assert experiment.faults[0].toxicity == 0.5


def test_override_null_removes() -> None:
    """--set key= (or key=null) removes the key so its default applies."""
    experiment = parse_experiment(BASE, overrides=["load.client_timeout=", "faults.1=null"])
    assert experiment.load.client_timeout == 10
    assert len(experiment.faults) == 1


def test_override_value_types_come_from_yaml() -> None:
    """Values are YAML: numbers are numbers, so a string where a number belongs still fails."""
    with pytest.raises(ExperimentError, match=r"load\.workers"):
        parse_experiment(BASE, overrides=["load.workers=two"])


def test_deep_merge_tracks_origins() -> None:
    """Merged values remember whether they came from the base or the overlay."""
    base = {"a": {"b": 1, "c": [{"x": 1}, {"x": 2}]}}
    overlay = {"a": {"c": [{"x": 5}]}}
    base_from: Origins = {
        ("a",): Origin(1),
        ("a", "b"): Origin(2),
        ("a", "c", 1, "x"): Origin(4),
    }
    overlay_from: Origins = {("a", "c", 0, "x"): Origin(9, "profile 'p'")}
    merged, origins = deep_merge(base, overlay, base_from, overlay_from)
    assert merged == {"a": {"b": 1, "c": [{"x": 5}, {"x": 2}]}}
    assert origins[("a", "c", 0, "x")] == Origin(9, "profile 'p'")
    assert origins[("a", "c", 1, "x")] == Origin(4)
    assert base == {"a": {"b": 1, "c": [{"x": 1}, {"x": 2}]}}


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("load.workers", ["load", "workers"]),
        ("faults.0.at", ["faults", 0, "at"]),
        ("faults[0].at", ["faults", 0, "at"]),
        ('slo.fault.endpoints."GET /x".p95', ["slo", "fault", "endpoints", "GET /x", "p95"]),
        ("a[1][2]", ["a", 1, 2]),
    ],
)
def test_key_paths(key: str, parts: list[str | int]) -> None:
    """Dotted paths, numeric segments, [n] indexes and quoted segments all parse."""
    assert parse_key_path(key, key) == parts


def test_apply_overrides_does_not_mutate_its_input() -> None:
    """Overrides copy what they change, so one parsed document serves every profile."""
    data = {"load": {"workers": 1}, "faults": [{"at": 1}, {"at": 2}]}
    overrides = parse_overrides(["load.workers=3", "load.client_timeout=2s", "faults.0="])
    result, provenance = apply_overrides(data, {}, overrides)
    assert data == {"load": {"workers": 1}, "faults": [{"at": 1}, {"at": 2}]}
    assert result == {"load": {"workers": 3, "client_timeout": "2s"}, "faults": [{"at": 2}]}
    assert provenance.origin(("load", "workers")) == Origin(None, "--set load.workers=3")
    with pytest.raises(InputProblems):
        apply_overrides(data, {}, parse_overrides(["load.workers.x=3"]))
    assert data == {"load": {"workers": 1}, "faults": [{"at": 1}, {"at": 2}]}


def test_origins_follow_removed_list_items() -> None:
    """After `--set faults.0=`, the new first fault's lines are the old second fault's."""
    origins: Origins = {
        ("faults",): Origin(5),
        ("faults", 0): Origin(6),
        ("faults", 1): Origin(7),
        ("faults", 1, "at"): Origin(7),
    }
    data = {"faults": [{"at": 1}, {"at": 2}]}
    _, provenance = apply_overrides(data, origins, parse_overrides(["faults.0="]))
    assert provenance.origin(("faults", 0, "at")) == Origin(7)
    assert provenance.origin(("faults",)) == Origin(5)
    _, provenance = apply_overrides(data, origins, parse_overrides(["faults.0=", "faults.0.x=1"]))
    assert provenance.origin(("faults", 0, "x")) == Origin(None, "--set faults.0.x=1")
    assert provenance.origin(("faults", 0, "at")) == Origin(7)
