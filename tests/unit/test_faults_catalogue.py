"""Unit tests for the fault catalogue: attribute validation, FaultSpec, and fault plans."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from resilience.errors import ExperimentError
from resilience.faults.catalogue import (
    FAULT_TYPES,
    FaultSpec,
    plan_fault,
    specs_from_model,
    validate_attributes,
)
from resilience.faults.toxiproxy import TOXIC_ATTRIBUTES


def test_every_toxic_type_and_named_fault_is_in_the_catalogue() -> None:
    """The catalogue covers the seven toxics and the six named faults of the brief."""
    expected = set(TOXIC_ATTRIBUTES) | {"outage", "hang", "flaky", "flap", "ramp", "latency"}
    assert set(FAULT_TYPES) == expected


def test_catalogue_toxic_attributes_match_what_toxiproxy_reads() -> None:
    """A plain toxic fault's attribute names are exactly the toxic's attribute names."""
    for name, attrs in TOXIC_ATTRIBUTES.items():
        assert [a.name for a in FAULT_TYPES[name].attributes] == list(attrs)


def test_defaults_are_filled_in() -> None:
    """Optional attributes get their defaults; given ones are kept."""
    assert validate_attributes("latency", {"latency": 200}) == {"latency": 200, "jitter": 0}
    assert validate_attributes("reset_peer", {}) == {"timeout": 0}
    assert validate_attributes("flap", {}) == {"period": 10.0, "duty": 0.5}
    assert validate_attributes("flaky", {}) == {"timeout": 0, "reroll": 1.0}
    assert validate_attributes("ramp", {"to": 800}) == {
        "from": 0,
        "to": 800,
        "steps": 5,
        "jitter": 0,
    }


def test_durations_with_units_become_the_attribute_unit() -> None:
    """'200ms' and '1s' convert to milliseconds; slicer delay converts to microseconds."""
    assert validate_attributes("latency", {"latency": "200ms", "jitter": "0.05s"}) == {
        "latency": 200,
        "jitter": 50,
    }
    assert validate_attributes("timeout", {"timeout": "2s"}) == {"timeout": 2000}
    slicer = validate_attributes("slicer", {"average_size": 64, "delay": "2ms"})
    assert slicer == {"average_size": 64, "size_variation": 0, "delay": 2000}
    assert validate_attributes("flap", {"period": "500ms", "duty": 0.25})["period"] == 0.5
    assert validate_attributes("latency", {"latency": "1m30s"})["latency"] == 90_000


def test_unknown_type_names_the_closest_one() -> None:
    """An unknown fault type is rejected with a suggestion and the list of known types."""
    with pytest.raises(
        ValueError, match=r"unknown fault type 'latncy' \(did you mean 'latency'\?\)"
    ):
        validate_attributes("latncy", {})


def test_unknown_attribute_is_rejected_with_suggestion() -> None:
    """Toxiproxy would ignore an unknown key; we refuse it and suggest the close name."""
    with pytest.raises(ValueError) as info:
        validate_attributes("latency", {"latency": 100, "jiter": 5})
    message = str(info.value)
    assert "unknown attribute 'jiter'" in message
    assert "did you mean 'jitter'" in message
    assert "latency, jitter" in message


def test_named_fault_without_attributes_refuses_any() -> None:
    """outage and hang take no attributes and say so."""
    with pytest.raises(ValueError, match="takes no attributes"):
        validate_attributes("outage", {"timeout": 0})
    with pytest.raises(ValueError, match="takes no attributes"):
        validate_attributes("hang", {"timeout": 5})


@pytest.mark.parametrize(
    ("fault_type", "attributes", "fragment"),
    [
        ("latency", {}, "attribute 'latency' is required"),
        ("bandwidth", {}, "attribute 'rate' is required"),
        ("latency", {"latency": "fast"}, "expected a duration like 200ms"),
        ("latency", {"latency": True}, "got True that is a bool"),
        ("latency", {"latency": -5}, "must be at least 0"),
        ("latency", {"latency": 1.5}, "whole number of milliseconds"),
        ("latency", {"latency": float("inf")}, "finite"),
        ("bandwidth", {"rate": "10KB"}, "expected a number in kilobytes per second"),
        ("limit_data", {"bytes": [1]}, "that is a list"),
        ("slicer", {"average_size": 0}, "must be at least 1"),
        ("slicer", {"average_size": 10, "size_variation": 10}, "must be smaller than"),
        ("flap", {"duty": 0}, "must be greater than 0"),
        ("flap", {"duty": 1.5}, "must be at most 1"),
        ("flap", {"period": 0.01}, "must be at least 0.1"),
        ("ramp", {"to": 100, "steps": 0}, "must be at least 1"),
        ("ramp", {"to": 100, "steps": 2.5}, "whole number"),
    ],
)
def test_bad_values_are_rejected_with_what_was_expected(
    fault_type: str, attributes: dict[str, object], fragment: str
) -> None:
    """Each bad value gets a message naming the type, the attribute and what was wrong."""
    with pytest.raises(ValueError) as info:
        validate_attributes(fault_type, attributes)
    assert fragment in str(info.value)
    assert str(info.value).startswith(fault_type)


def test_fault_spec_validates_and_normalises() -> None:
    """FaultSpec stores normalised attributes and names its toxic by index and type."""
    spec = FaultSpec(
        3, at=10, duration=5, proxy="postgres", type="latency", attributes={"latency": "1s"}
    )
    assert spec.attributes == {"latency": 1000, "jitter": 0}
    assert spec.toxic_name == "resilience-3-latency"
    assert spec.end == 15
    assert isinstance(spec.at, float) and isinstance(spec.duration, float)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"duration": 0}, "duration must be > 0"),
        ({"at": -1}, "'at' must be >= 0"),
        ({"stream": "sideways"}, "stream must be upstream or downstream"),
        ({"toxicity": 1.5}, "toxicity must be between 0 and 1"),
        (
            {"type": "outage", "attributes": {}, "toxicity": 0.5},
            "toxicity has no meaning for outage",
        ),
        ({"attributes": {"latncy": 5}}, "fault 0 (latency on db): latency: unknown attribute"),
    ],
)
def test_fault_spec_rejects_bad_fields(kwargs: dict[str, object], fragment: str) -> None:
    """A bad field is reported with the fault's index, type and proxy."""
    base: dict[str, object] = {
        "index": 0,
        "at": 0.0,
        "duration": 1.0,
        "proxy": "db",
        "type": "latency",
        "attributes": {"latency": 5},
    }
    base.update(kwargs)
    with pytest.raises(ValueError) as info:
        FaultSpec(**base)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_from_model_adapts_any_object_with_the_model_fields() -> None:
    """from_model reads at/duration/proxy/type/stream/toxicity/attributes from a model Fault."""
    faults = [
        SimpleNamespace(
            at=1.0,
            duration=2.0,
            proxy="p",
            type="hang",
            stream="upstream",
            toxicity=1.0,
            attributes={},
        ),
        SimpleNamespace(
            at=5.0,
            duration=1.0,
            proxy="q",
            type="flaky",
            stream="downstream",
            toxicity=0.3,
            attributes={"reroll": "2s"},
        ),
    ]
    specs = specs_from_model(faults)
    assert [s.index for s in specs] == [0, 1]
    assert specs[0].stream == "upstream"
    assert specs[1].attributes == {"timeout": 0, "reroll": 2.0}
    assert specs[1].toxicity == 0.3


def test_specs_from_model_turns_refusals_into_an_experiment_error() -> None:
    """A fault the catalogue refuses stops the run with exit 2, naming faults[i]."""
    faults = [
        SimpleNamespace(
            at=0.0,
            duration=1.0,
            proxy="p",
            type="hang",
            stream="downstream",
            toxicity=1.0,
            attributes={},
        ),
        SimpleNamespace(
            at=0.0,
            duration=1.0,
            proxy="p",
            type="slicer",
            stream="downstream",
            toxicity=1.0,
            attributes={"average_size": 8, "size_variation": 9},
        ),
    ]
    with pytest.raises(ExperimentError) as info:
        specs_from_model(faults)
    assert info.value.exit_code == 2
    assert info.value.problems and info.value.problems[0].startswith(
        "faults[1]: fault 1 (slicer on p)"
    )


SAMPLES = {"ms": "200ms", "us": "2ms", "seconds": "2s", "fraction": 0.5}
COUNTS = {"average_size": 64, "size_variation": 8, "steps": 3, "bytes": 1000, "rate": 100}


def test_whatever_the_experiment_loader_accepts_the_catalogue_accepts() -> None:
    """Attributes normalised by the loader's table (all, or only the required) pass here too."""
    loader = pytest.importorskip("resilience.experiment.fault_types")
    assert set(loader.FAULT_TYPES) == set(FAULT_TYPES)
    for name, spec in loader.FAULT_TYPES.items():
        every = {a.name: SAMPLES.get(a.kind, COUNTS.get(a.name, 1)) for a in spec.attributes}
        required = {k: v for k, v in every.items() if spec.attribute(k).required}
        for given in (every, required):
            converted, problems = loader.normalize_attributes(name, given)
            assert problems == [], (name, problems)
            validate_attributes(name, converted)

    """A toxic fault plans one toxic with our prefix, its stream, toxicity and attributes."""
    spec = FaultSpec(
        0, 1, 2, "db", "bandwidth", stream="upstream", toxicity=0.5, attributes={"rate": 10}
    )
    plan = plan_fault(spec)
    assert plan.toxic is not None
    assert plan.toxic.name == "resilience-0-bandwidth"
    assert (plan.toxic.type, plan.toxic.stream, plan.toxic.toxicity) == (
        "bandwidth",
        "upstream",
        0.5,
    )
    assert plan.toxic.attributes == {"rate": 10}
    assert not plan.disables_proxy and plan.steps == ()


def test_outage_plan_disables_the_proxy_without_toxic() -> None:
    """outage is a proxy disable, nothing else."""
    plan = plan_fault(FaultSpec(1, 0, 5, "db", "outage"))
    assert plan.toxic is None and plan.disables_proxy and plan.steps == ()


def test_hang_plan_is_a_timeout_toxic_with_zero() -> None:
    """hang is a timeout toxic with timeout 0 on the fault's stream."""
    plan = plan_fault(FaultSpec(2, 0, 5, "db", "hang"))
    assert plan.toxic is not None
    assert (plan.toxic.type, dict(plan.toxic.attributes)) == ("timeout", {"timeout": 0})
    assert plan.toxic.name == "resilience-2-hang"


def test_flaky_plan_rerolls_the_toxicity_on_schedule() -> None:
    """flaky is reset_peer with the fault's toxicity, re-drawn every reroll seconds."""
    plan = plan_fault(FaultSpec(0, 10, 3.5, "db", "flaky", toxicity=0.25))
    assert plan.toxic is not None
    assert (plan.toxic.type, plan.toxic.toxicity) == ("reset_peer", 0.25)
    assert [s.at for s in plan.steps] == [11.0, 12.0, 13.0]
    assert all(s.action == "update" and s.toxicity == 0.25 for s in plan.steps)


def test_flaky_without_reroll_has_no_steps() -> None:
    """reroll 0 switches the re-draws off."""
    plan = plan_fault(FaultSpec(0, 0, 10, "db", "flaky", toxicity=0.5, attributes={"reroll": 0}))
    assert plan.steps == ()


def test_flap_plan_alternates_down_and_up_within_the_window() -> None:
    """flap is down for duty*period then up, repeated; every step lies inside the window."""
    plan = plan_fault(FaultSpec(0, 10, 5, "db", "flap", attributes={"period": 2, "duty": 0.25}))
    assert plan.disables_proxy
    assert [(s.at, s.action) for s in plan.steps] == [
        (10.5, "enable"),
        (12.0, "disable"),
        (12.5, "enable"),
        (14.0, "disable"),
        (14.5, "enable"),
    ]


def test_flap_with_full_duty_is_a_plain_outage() -> None:
    """duty 1 means down the whole time: no toggles."""
    plan = plan_fault(FaultSpec(0, 0, 5, "db", "flap", attributes={"period": 1, "duty": 1}))
    assert plan.disables_proxy and plan.steps == ()


def test_ramp_plan_rises_in_equal_steps_from_from_to_to() -> None:
    """ramp starts at `from` and reaches `to` at the last of `steps` equal intervals."""
    spec = FaultSpec(0, 0, 40, "db", "ramp", attributes={"from": 100, "to": 400, "steps": 4})
    plan = plan_fault(spec)
    assert plan.toxic is not None
    assert plan.toxic.type == "latency"
    assert plan.toxic.attributes == {"latency": 100, "jitter": 0}
    assert [(s.at, dict(s.attributes)) for s in plan.steps] == [
        (10.0, {"latency": 200}),
        (20.0, {"latency": 300}),
        (30.0, {"latency": 400}),
    ]


def test_ramp_with_one_step_goes_straight_to_the_target() -> None:
    """A single step means the `to` latency for the whole fault."""
    plan = plan_fault(
        FaultSpec(0, 0, 10, "db", "ramp", attributes={"from": 5, "to": 50, "steps": 1})
    )
    assert plan.toxic is not None
    assert plan.toxic.attributes["latency"] == 50
    assert plan.steps == ()
