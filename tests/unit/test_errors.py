"""The exception tree: drawn complete in resilience/errors.py, one root for the toolkit, and
the reference shop's errors kept out of it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import resilience
from resilience import errors
from resilience.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_UNAVAILABLE, ResilienceError
from resilience.shop.errors import ShopError


def _toolkit_errors() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module in pkgutil.walk_packages(resilience.__path__, "resilience."):
        name = module.name
        if name.startswith(("resilience.shop", "resilience.testing", "resilience.load.worker",
                            "resilience.load.runtime", "resilience.load.master",
                            "resilience.load.remote", "resilience.cli")):  # fmt: skip
            continue
        loaded = importlib.import_module(name)
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(cls, ResilienceError) and cls.__module__ == name:
                found.add(cls)
    return found


def test_the_picture_names_every_error_of_the_toolkit() -> None:
    """Every ResilienceError subclass defined anywhere is drawn in errors.py's docstring."""
    picture = errors.__doc__ or ""
    missing = sorted(cls.__name__ for cls in _toolkit_errors() if cls.__name__ not in picture)
    assert missing == []


def test_the_shop_has_its_own_root() -> None:
    """A shop failure is not a toolkit error (the shop is a target), nor the other way round."""
    assert not issubclass(ShopError, ResilienceError)
    assert not issubclass(ResilienceError, ShopError)


def test_exit_codes_of_the_branches() -> None:
    """Bad input 2; could not run 3; interrupted 130; a guard's trip is a failure (1)."""
    assert errors.ExperimentError.exit_code == EXIT_INVALID
    for cls in (errors.StackError, errors.DependencyUnavailable, errors.FaultError,
                errors.ObserveError, errors.LoadError):  # fmt: skip
        assert cls.exit_code == EXIT_UNAVAILABLE, cls
    assert errors.Interrupted.exit_code == EXIT_INTERRUPTED
    assert errors.GuardTripped.exit_code == 1
