"""``${env:NAME}`` references: resolved at load time, located errors, kept out of to_yaml."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from resilience.cli import experiments as experiments_cli
from resilience.errors import ExperimentError
from resilience.experiment import (
    Experiment,
    load_all_profiles,
    load_experiment,
    parse_experiment,
)

TOKEN = "s3cr3t-token-value"
ENV = {"API_TOKEN": TOKEN, "TIMEOUT": "5s", "EMPTY": ""}
DOC = """\
name: demo
description: costs $${HOME} dollars
load:
  stages: [{duration: 40s, users: 2, spawn_rate: 2}]
  client_timeout: ${env:TIMEOUT}
  workload:
    requests:
      - path: /catalog/items
        headers:
          Authorization: "Bearer ${env:API_TOKEN}"
          X-Twice: "${env:API_TOKEN}/${env:API_TOKEN}${env:EMPTY}"
      - method: POST
        path: /search
        form:
          ${env:KEY}: keys are never resolved
profiles:
  smoke:
    load: {stages: [{duration: 20s}]}
  other:
    description: "${env:ONLY_FOR_OTHER}"
"""


def load(text: str = DOC, environ: dict[str, str] | None = None, **kwargs: Any) -> Experiment:
    return parse_experiment(
        textwrap.dedent(text),
        file="demo.yaml",
        environ=ENV if environ is None else environ,
        **kwargs,
    )


def first_headers(experiment: Experiment) -> dict[str, str]:
    requests = experiment.load.workload.requests
    assert requests is not None
    return requests[0].headers


def error(text: str = DOC, environ: dict[str, str] | None = None, **kwargs: Any) -> str:
    with pytest.raises(ExperimentError) as info:
        load(text, environ, **kwargs)
    return str(info.value)


def test_references_resolve_in_any_string() -> None:
    """Header values, durations and strings with several references resolve; $${ is ${."""
    experiment = load()
    headers = first_headers(experiment)
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Twice"] == f"{TOKEN}/{TOKEN}"
    assert experiment.load.client_timeout == 5.0
    assert experiment.description == "costs ${HOME} dollars"


def test_mapping_keys_are_not_resolved() -> None:
    """A key is a name, not a value: `${env:KEY}` as a key stays as written."""
    requests = load().load.workload.requests
    assert requests is not None and requests[1].form is not None
    assert requests[1].form["${env:KEY}"] == "keys are never resolved"


def test_secret_values_are_the_values_taken_from_the_environment() -> None:
    """secret_values() holds every non-empty value a reference resolved to."""
    assert load().secret_values() == frozenset({TOKEN, "5s"})
    assert (
        load("name: x\nload: {preset: normal, workload: {locustfile: f.py}}\n").secret_values()
        == frozenset()
    )


def test_a_missing_variable_is_a_located_error() -> None:
    """An unset variable names itself, the file, the line and the key path."""
    text = error(environ={"TIMEOUT": "5s"})
    assert "2 problems" in text
    assert (
        "line 10, at load.workload.requests[0].headers.Authorization: environment variable "
        "API_TOKEN is not set" in text
    )
    assert "line 11, at load.workload.requests[0].headers.X-Twice" in text
    assert "expected ${env:NAME} with NAME set in the environment" in text
    assert "got no API_TOKEN in the environment" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("${env:}", "'${env:}'"),
        ("${API_TOKEN}", "'${API_TOKEN}'"),
        ("${env:API-TOKEN}", "'${env:API-TOKEN}'"),
        ("${env:API_TOKEN", "'${env:API_TOKEN'"),
        ("$${env:API_TOKEN} and ${oops}", "'${oops}'"),
    ],
)
def test_anything_else_after_a_dollar_brace_is_an_error(value: str, shown: str) -> None:
    """A mistyped reference is refused (with how to write a literal ${), never sent as text."""
    text = error(
        f'name: demo\ndescription: "{value}"\nload: {{preset: normal, workload: {{locustfile: f.py}}}}\n'
    )
    assert "demo.yaml:2, at description: not an environment reference" in text
    assert "write $${ for a literal ${" in text
    assert f"got {shown}" in text


def test_only_the_chosen_profile_needs_its_variables() -> None:
    """References inside other profiles are not resolved; the chosen one's are, and named."""
    assert load(profile="smoke").load.duration == 20.0
    text = error(profile="other")
    assert (
        "at description: environment variable ONLY_FOR_OTHER is not set (profile 'other')" in text
    )


def test_set_values_may_hold_references() -> None:
    """A --set value is resolved like the file's strings, and kept as a reference."""
    experiment = load(overrides=["description=token ${env:API_TOKEN}"])
    assert experiment.description == f"token {TOKEN}"
    assert "description: token ${env:API_TOKEN}" in experiment.to_yaml()
    assert "--set description=${env:NOPE}" in error(overrides=["description=${env:NOPE}"])


def test_to_yaml_keeps_the_references_not_the_secrets() -> None:
    """The run directory's copy names the variables; it reloads to the same experiment."""
    experiment = load()
    text = experiment.to_yaml()
    assert TOKEN not in text
    data = yaml.safe_load(text)
    headers = data["load"]["workload"]["requests"][0]["headers"]
    assert headers["Authorization"] == "Bearer ${env:API_TOKEN}"
    assert headers["X-Twice"] == "${env:API_TOKEN}/${env:API_TOKEN}${env:EMPTY}"
    assert data["load"]["client_timeout"] == "${env:TIMEOUT}"
    assert data["description"] == "costs $${HOME} dollars"
    again = parse_experiment(text, environ=ENV)
    assert again.model_dump(exclude={"profiles"}) == experiment.model_dump(exclude={"profiles"})
    assert again.secret_values() == experiment.secret_values()
    with_profiles = yaml.safe_load(experiment.to_yaml(include_profiles=True))
    assert with_profiles["profiles"]["other"]["description"] == "${env:ONLY_FOR_OTHER}"


def test_to_yaml_writes_a_value_changed_after_loading() -> None:
    """A reference is written back only where the value is still the one it resolved to."""
    experiment = load()
    changed = experiment.model_copy(update={"description": "set by the runner ${x}"})
    data = yaml.safe_load(changed.to_yaml())
    assert data["description"] == "set by the runner $${x}"
    assert data["load"]["workload"]["requests"][0]["headers"]["Authorization"] == (
        "Bearer ${env:API_TOKEN}"
    )


def test_errors_never_quote_a_secret() -> None:
    """A value from the environment that fails validation is shown as written."""
    text = error(environ={**ENV, "TIMEOUT": "hunter2-is-not-a-duration"})
    assert "hunter2" not in text
    assert "at load.client_timeout" in text
    assert "got '${env:TIMEOUT}' (from the environment; its value is not shown)" in text


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """load_experiment and load_all_profiles read os.environ unless given environ."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "demo.yaml"
    path.write_text(DOC.replace('  other:\n    description: "${env:ONLY_FOR_OTHER}"\n', ""))
    assert load_experiment(path).secret_values() == frozenset({TOKEN, "5s"})
    assert set(load_all_profiles(path)) == {None, "smoke"}
    monkeypatch.delenv("API_TOKEN")
    with pytest.raises(ExperimentError, match="API_TOKEN is not set"):
        load_experiment(path)


def test_validate_exits_2_naming_the_variable(tmp_path: Path) -> None:
    """`resilience validate` on a file whose variable is unset exits 2 and names it."""
    app = typer.Typer()
    experiments_cli.register(app)
    path = tmp_path / "demo.yaml"
    path.write_text(DOC)
    result = CliRunner().invoke(
        app, ["validate", str(path), "--profile", "smoke"], env={"TIMEOUT": "5s"}
    )
    assert result.exit_code == 2, result.output
    assert "API_TOKEN is not set" in result.output
