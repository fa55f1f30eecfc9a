"""Every kind of bad input is an ExperimentError naming file, line, key path, expected, got."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from resilience.errors import ExperimentError
from resilience.experiment import load_experiment

GOOD = """\
name: demo
load:
  stages:
    - {duration: 2m, users: 10, spawn_rate: 5}
  workload:
    requests:
      - {path: /catalog/items}
faults:
  - {at: 30s, duration: 10s, proxy: postgres, type: outage}
"""


def write(tmp_path: Path, text: str | bytes, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def fail(path: Path | str, **kwargs: object) -> ExperimentError:
    with pytest.raises(ExperimentError) as info:
        load_experiment(path, **kwargs)  # type: ignore[arg-type]
    return info.value


def assert_complete(error: ExperimentError, file: str, line: int | None, path: str | None) -> None:
    """The message names the file, the line, the key path, and has expected/got."""
    text = str(error)
    assert file in text
    if line is not None:
        assert f":{line}" in text or f"line {line}" in text, text
    if path is not None:
        assert path in text, text
    assert "expected" in text, text
    assert "got" in text, text


def test_good_file_loads(tmp_path: Path) -> None:
    """The baseline document of these tests is valid."""
    experiment = load_experiment(write(tmp_path, GOOD))
    assert experiment.name == "demo"
    assert experiment.source == tmp_path / "exp.yaml"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    """A misspelt key names its line and path and suggests the intended key."""
    error = fail(write(tmp_path, GOOD.replace("{duration: 2m,", "{duraton: 2m,")))
    assert_complete(error, "exp.yaml", 4, "load.stages[0].duraton")
    assert "unknown key 'duraton' (did you mean 'duration'?)" in str(error)


def test_bad_duration_shows_an_example(tmp_path: Path) -> None:
    """A bad duration says what a duration looks like and quotes the input."""
    error = fail(write(tmp_path, GOOD.replace("duration: 10s", "duration: 10 sec")))
    assert_complete(error, "exp.yaml", 9, "faults[0].duration")
    assert "expected a duration like 500ms, 30s or 2h" in str(error)
    assert "got '10 sec'" in str(error)
    assert error.location.line == 9
    assert error.location.path == "faults[0].duration"
    assert error.expected is not None and error.got == "'10 sec'"


def test_wrong_type(tmp_path: Path) -> None:
    """A string where a number belongs names the type expected and the value found."""
    error = fail(write(tmp_path, GOOD.replace("users: 10", "users: ten")))
    assert_complete(error, "exp.yaml", 4, "load.stages[0].users")
    assert "a whole number" in str(error)


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    """'users: true' is refused rather than read as one user."""
    error = fail(write(tmp_path, GOOD.replace("users: 10", "users: true")))
    assert_complete(error, "exp.yaml", 4, "load.stages[0].users")


def test_missing_required_key(tmp_path: Path) -> None:
    """A missing key is reported at its parent's line with the missing key in the path."""
    error = fail(write(tmp_path, GOOD.replace(", users: 10", "")))
    assert_complete(error, "exp.yaml", 4, "load.stages[0].users")
    assert "missing required key 'users'" in str(error)


def test_several_problems_are_listed_together(tmp_path: Path) -> None:
    """Independent problems are all reported, each with its own line and path."""
    text = GOOD.replace("users: 10", "users: ten").replace("name: demo", "name: Demo!")
    error = fail(write(tmp_path, text))
    assert len(error.problems) == 2
    assert error.problems[0].startswith("line 1, at name")
    assert error.problems[1].startswith("line 4, at load.stages[0].users")
    assert all("expected" in p and "got" in p for p in error.problems)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    """Broken YAML names the line of the problem."""
    error = fail(write(tmp_path, "name: demo\nload:\n  stages: [\n    - x: 1\n  : :\n"))
    assert_complete(error, "exp.yaml", None, None)
    assert error.location.line is not None
    assert "not valid YAML" in str(error)


@pytest.mark.parametrize(
    "line",
    [
        "      - {path: /orders/{id}, weight: 2}",
        "      - {name: one, path: /orders/{order_id}}",
        "      - {path: /orders, headers: {Authorization: Bearer {token}}}",
    ],
)
def test_an_unquoted_placeholder_in_a_flow_mapping_says_to_quote_it(
    tmp_path: Path, line: str
) -> None:
    """`{path: /orders/{id}}` is a YAML error, not a placeholder: the message says so, at
    its line, with the quoted form, instead of only libyaml's "did not find expected ','"."""
    text = "name: demo\nload:\n  preset: normal\n  workload:\n    requests:\n" + line + "\n"
    error = fail(write(tmp_path, text))
    assert error.location.line == 6
    text = " ".join(str(error).split())
    quoted = 'Authorization: "Bearer {token}"' if "Bearer" in line else 'path: "/orders/{'
    assert "did not find expected" in text and f"quote it: {quoted}" in text, text


def test_tab_indentation(tmp_path: Path) -> None:
    """A tab in indentation is a YAML error with its line."""
    error = fail(write(tmp_path, "name: demo\nload:\n\tstages: []\n"))
    assert_complete(error, "exp.yaml", 3, None)


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list of 2 items"), ("just text\n", "'just text'"), ("42\n", "42")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    """A list, string or number at the top level is refused with what was found."""
    error = fail(write(tmp_path, text))
    assert_complete(error, "exp.yaml", 1, None)
    assert got in str(error)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    """Empty files and comment-only files are reported as empty, at line 1."""
    error = fail(write(tmp_path, text))
    assert_complete(error, "exp.yaml", 1, None)
    assert error.location.line == 1
    assert "empty" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "char"),
    [
        (GOOD.replace("name: demo", "name: de\x07mo"), 1, "\\x07"),
        (GOOD + "tags: [a, \x00]\n", 10, "\\x00"),
        (GOOD.replace("{path: /catalog/items}", "{path: /catalog/\x1bitems}"), 7, "\\x1b"),
    ],
)
def test_control_characters_name_their_line(
    tmp_path: Path, text: str, line: int, char: str
) -> None:
    """A control character is refused at its own line and column, naming the character."""
    error = fail(write(tmp_path, text))
    assert_complete(error, "exp.yaml", line, None)
    assert error.location.line == line
    assert char in str(error)


def test_non_utf8_file(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line and offset."""
    error = fail(write(tmp_path, b"name: demo\nload: \xff\xfe\n"))
    assert_complete(error, "exp.yaml", 2, None)
    assert "UTF-8" in str(error)
    assert "0xff" in str(error)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (as some editors write) is not an error."""
    path = write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode())
    assert load_experiment(path).name == "demo"


def test_missing_file_lists_the_catalogue(tmp_path: Path) -> None:
    """A missing file or unknown catalogue name is an error listing the catalogue."""
    error = fail(tmp_path / "nope.yaml")
    assert_complete(error, "nope.yaml", None, None)
    catalogue = tmp_path / "cat"
    catalogue.mkdir()
    write(catalogue, GOOD, "demo.yaml")
    error = fail("unknown-name", catalogue_dir=catalogue)
    assert "catalogue: demo" in str(error)


def test_catalogue_name_resolves(tmp_path: Path) -> None:
    """A bare name loads from the catalogue directory."""
    catalogue = tmp_path / "cat"
    catalogue.mkdir()
    write(catalogue, GOOD, "demo.yaml")
    assert load_experiment("demo", catalogue_dir=catalogue).name == "demo"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    """Passing a directory is an error, not a traceback."""
    error = fail(tmp_path)
    assert "not a file" in str(error)


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    """A key given twice in one mapping is an error pointing at the second."""
    error = fail(write(tmp_path, GOOD + "name: other\n"))
    assert_complete(error, "exp.yaml", 10, "name")
    assert "first on line 1" in str(error)


def test_unsupported_tags_are_refused(tmp_path: Path) -> None:
    """Python object tags and other custom tags are refused, never constructed."""
    error = fail(write(tmp_path, GOOD.replace("name: demo", "name: !!python/object:os.system x")))
    assert_complete(error, "exp.yaml", 1, "name")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    """A self-referencing alias is an error, not an endless loop."""
    error = fail(write(tmp_path, GOOD + "tags: &a [*a]\n"))
    assert "recursive alias" in str(error)


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    """Exponential alias expansion stops at a size limit with an error."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    error = fail(write(tmp_path, GOOD + "\n".join(lines) + "\n"))
    assert "too large" in str(error)


def test_merge_keys_work_and_keep_lines(tmp_path: Path) -> None:
    """YAML merge keys (<<) merge; errors in merged values point at their source line."""
    stages = "- &s {duration: 1m, users: 3, spawn_rate: 2}\n    - {<<: *s, users: 7}"
    text = GOOD.replace("- {duration: 2m, users: 10, spawn_rate: 5}", stages)
    experiment = load_experiment(write(tmp_path, text))
    assert [(s.duration, s.users) for s in experiment.load.resolve_stages()] == [(60, 3), (60, 7)]
    error = fail(write(tmp_path, text.replace("spawn_rate: 2", "spawn_rate: two")))
    assert "line 4, at load.stages[1].spawn_rate" in "\n".join(error.problems)


def test_errors_in_a_profile_name_the_profile(tmp_path: Path) -> None:
    """A bad value written in a profile is reported at the profile's line, naming it."""
    text = GOOD + "profiles:\n  smoke:\n    load: {stages: [{duration: 30 sec}]}\n"
    error = fail(write(tmp_path, text), profile="smoke")
    assert_complete(error, "exp.yaml", 12, "load.stages[0].duration")
    assert "profile 'smoke'" in str(error)


def test_unknown_profile_lists_the_available_ones(tmp_path: Path) -> None:
    """Asking for a profile the file lacks lists the profiles it has."""
    text = GOOD + "profiles:\n  smoke: {}\n  long: {}\n"
    error = fail(write(tmp_path, text), profile="fast")
    assert_complete(error, "exp.yaml", 10, "profiles")
    assert "smoke, long" in str(error)


def test_profile_must_be_a_mapping(tmp_path: Path) -> None:
    """A profile that is not a mapping is refused at its line."""
    error = fail(write(tmp_path, GOOD + "profiles:\n  smoke: [1]\n"), profile="smoke")
    assert_complete(error, "exp.yaml", 11, "profiles.smoke")


def test_override_errors_name_the_override(tmp_path: Path) -> None:
    """A bad --set value is reported with the override's text."""
    path = write(tmp_path, GOOD)
    error = fail(path, overrides=["faults.0.duration=-5s"])
    assert_complete(error, "exp.yaml", None, "faults[0].duration")
    assert "--set faults.0.duration=-5s" in str(error)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("faults.3.at=1s", "no item 3"),
        ("no-equals-sign", "key=value"),
        ("=5", "key=value"),
        ("name.sub=x", "cannot set a key inside name"),
        ("load..workers=2", "empty segment"),
        ("load.workers=[1", "not valid YAML"),
        ("faults.x.at=1s", "no item 'x'"),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, needle: str) -> None:
    """Malformed overrides are errors naming the override."""
    error = fail(write(tmp_path, GOOD), overrides=[override])
    assert needle in str(error)
    assert f"--set {override}" in str(error)
    assert "expected" in str(error) and "got" in str(error)


def test_huge_file_is_refused(tmp_path: Path) -> None:
    """Files over the size limit are refused before parsing."""
    error = fail(write(tmp_path, GOOD + "#" * (1 << 20)))
    assert "too large" in str(error)


def test_many_problems_are_counted_and_the_first_listed(tmp_path: Path) -> None:
    """Thousands of bad values give one error: the first 50 listed, the rest counted."""
    error = fail(write(tmp_path, GOOD + "tags: [" + ", ".join(["1"] * 3000) + "]\n"))
    assert str(error).splitlines()[0].endswith("3000 problems")
    assert len(error.problems) == 51
    assert error.problems[0].startswith("line 10, at tags[0]:")
    assert error.problems[1].startswith("line 10, at tags[1]:")
    assert error.problems[-1] == "... and 2950 more"


def test_a_long_list_of_values_is_refused_before_it_is_built(tmp_path: Path) -> None:
    """A list of more values than the cap is refused (at its line) without composing it."""
    error = fail(write(tmp_path, GOOD + "tags: [" + ",".join(["a"] * 200_001) + "]\n"))
    assert "too large" in str(error)
    assert error.location.line == 10


def _bomb(levels: int) -> str:
    """A YAML list whose aliases expand to 10**levels values, in a few hundred characters."""
    parts = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize(
    ("override", "needle", "path"),
    [
        ("tags=&a [*a]", "recursive alias", "tags[0]"),
        ("tags=&a {b: *a}", "recursive alias", "tags.b"),
        (f"tags={_bomb(9)}", "too large", "tags"),
        ("tags=" + "[" * 70 + "]" * 70, "nested too deeply", "tags"),
        ("load.workload.wait=!!python/object:os.system x", "tag", "load.workload.wait"),
        ("tags=[a, a\x07]", "control character", "tags"),
        ("tags=a\udcff", "not UTF-8", "tags"),
        ("tags={a: 1, a: 2}", "duplicate key 'a'", "tags.a"),
    ],
)
def test_set_values_go_through_the_file_reader(
    tmp_path: Path, override: str, needle: str, path: str | None
) -> None:
    """--set values meet the same YAML reader, limits and messages as files: no traceback."""
    error = fail(write(tmp_path, GOOD), overrides=[override])
    assert_complete(error, "exp.yaml", None, path)
    assert needle in str(error)
    assert "--set tags=" in str(error) or "--set load." in str(error)


def test_set_nesting_counts_from_the_top_of_the_document(tmp_path: Path) -> None:
    """A value 60 levels deep under a 10-segment key path is 70 levels: too deep."""
    key = ".".join(["a"] * 10)
    value = "[" * 60 + "]" * 60
    error = fail(write(tmp_path, GOOD), overrides=[f"{key}={value}"])
    assert "nested too deeply" in str(error)
    error = fail(write(tmp_path, GOOD), overrides=[".".join(["a"] * 65) + "=1"])
    assert "the key path is too deep" in str(error)


def test_set_shares_the_value_budget_with_the_file(tmp_path: Path) -> None:
    """The file and its --set values together stay under the value cap."""
    big = "[" + ",".join(["a"] * 30_000) + "]"
    path = write(tmp_path, GOOD + f"description: {big}\n".replace("description", "x-pad"))
    error = fail(path, overrides=[f"tags={big}"])
    assert "too large" in str(error)
    fine = load_experiment(write(tmp_path, GOOD, "fine.yaml"), overrides=[f"tags={big}"])
    assert len(fine.tags) == 30_000


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("faults.\u00b2.at=1s", "no item '\u00b2'"),
        ("faults.\u06f0.at=1s", "no item '\u06f0'"),
        ("faults[\u06f0].at=1s", "bad index"),
    ],
)
def test_set_indexes_are_ascii_digits(tmp_path: Path, override: str, needle: str) -> None:
    """Only 0-9 address list items (a superscript two crashed int(), an Arabic-Indic zero
    passed for 0)."""
    error = fail(write(tmp_path, GOOD), overrides=[override])
    assert needle in str(error)


def test_too_many_set_options(tmp_path: Path) -> None:
    """More than 100 --set options are refused (each can rewrite the whole document)."""
    error = fail(write(tmp_path, GOOD), overrides=["tags=[]"] * 101)
    assert "too many --set options" in str(error)
    assert load_experiment(write(tmp_path, GOOD), overrides=["tags=[a]"] * 100).tags == ["a"]


def test_long_set_values_are_cut_short_in_messages(tmp_path: Path) -> None:
    """An error names a long override by its first 77 characters."""
    error = fail(write(tmp_path, GOOD), overrides=["load.workers=" + "x" * 500])
    assert "(--set load.workers=" + "x" * 64 + "...)" in str(error)
