"""The directory a run (or a game-day session) writes, kept as the toolkit keeps it.

One ``Redactor`` per run: every file written there (through ``resilience.rundir``'s
writers) and every log line of ``run.log`` and the load workers' logs goes through it, so
the experiment's secrets (``${env:NAME}`` values, a URL's password, a bearer token) never
land on disk. The experiment copy is written masked with its ``${env:NAME}`` references
kept, and the analysis judges that copy (``judged``: masked endpoint names match the load
files'). From ``private()`` on — after the stack is up, because the stack writes files that
PostgreSQL, another user, must read — the process's files are private (0600 / 0700);
``close()`` narrows anything made wider (an existing ``--out`` directory), gives the
process its umask back and detaches the run log. ``close()`` is idempotent.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from resilience.errors import ResilienceError
from resilience.experiment.loader import load_experiment
from resilience.experiment.model import Experiment
from resilience.redact import RedactingFilter, Redactor, private_files, tighten_tree
from resilience.rundir.layout import RunDir, open_private, redact_file, write_experiment

logger = logging.getLogger(__name__)


def attach_run_log(path: Path, redactor: Redactor | None = None) -> logging.FileHandler:
    """Log the package's INFO and above (DEBUG under ``--verbose``) to ``path`` (a private
    file), every record masked by ``redactor`` (the rules by name and shape when None).

    The ``resilience`` logger is lowered to INFO when it is above, never raised: under
    ``--verbose`` it inherits DEBUG and must keep it. The terminal's handler has its own
    level (resilience/cli), so lowering the logger does not fill the terminal."""
    open_private(path, "a").close()  # made 0600 by the run directory's rule, then appended to
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    handler.addFilter(RedactingFilter(redactor or Redactor()))
    ours = logging.getLogger("resilience")
    ours.addHandler(handler)
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    return handler


class RunFiles:
    """A run's directory, its redactor, its log and its file modes (see the module doc)."""

    def __init__(self, experiment: Experiment) -> None:
        self.layout: RunDir | None = None
        self.experiment = experiment
        self.redactor = Redactor(experiment.secret_values())
        """One per run: every file of the run directory and every log line goes through it."""
        self.judged = experiment
        """The experiment the analysis judges: the run directory's copy once it is written."""
        self._log_handler: logging.Handler | None = None
        self._private = ExitStack()
        self._umask: int | None = None

    def create(self, path: Path, *, recorded: Experiment | None = None) -> RunDir:
        """The directory, the masked experiment copy (``recorded``: the experiment as run,
        when it differs from the one given) and the run log."""
        layout = self.layout = RunDir(path).create()
        write_experiment(layout.experiment, (recorded or self.experiment).to_data(), self.redactor)
        self._log_handler = attach_run_log(layout.run_log, self.redactor)
        self.judged = _as_recorded(layout, self.experiment)
        return layout

    def private(self) -> None:
        """The process's files private from here on (the workers' logs, anything else)."""
        if self._umask is None:
            self._umask = self._private.enter_context(private_files())

    def redact_worker_logs(self) -> None:
        """The workers' logs through the redactor once they have exited: what they wrote
        to stderr past logging (tracebacks, Locust's prints) is masked too."""
        if self.layout is None:
            return
        master = self.layout.logs / "load-master.log"  # a distributed run's relay
        for path in [*self.layout.worker_logs(), *([master] if master.exists() else [])]:
            try:
                redact_file(path, self.redactor)
            except OSError as exc:
                logger.warning("could not mask secrets in %s: %s", path, exc)

    def close_private(self) -> None:
        """Narrow whatever was made with a wider mode (an existing ``--out`` directory, a
        file made before the umask took hold), then give the process its umask back,
        before the stack is touched again."""
        try:
            path = self.layout.path if self.layout is not None else None
            if path is not None and self._umask is not None and path.exists():
                tighten_tree(path, umask=self._umask)
        except OSError as exc:
            logger.warning("could not narrow the modes of %s: %s", self.layout, exc)
        finally:
            self._private.close()
            self._umask = None

    def close(self) -> None:
        """``close_private`` and the run log detached."""
        self.close_private()
        if self._log_handler is not None:
            logging.getLogger("resilience").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


def _as_recorded(layout: RunDir, experiment: Experiment) -> Experiment:
    """The experiment as the run directory recorded it (its secrets masked, so endpoint
    names match the load files'): what the analysis judges, now and in a later
    ``resilience analyse``. The live experiment if the copy does not load back."""
    try:
        return load_experiment(layout.experiment)
    except ResilienceError as exc:
        logger.warning("judging the experiment as loaded: its copy does not load back: %s", exc)
        return experiment
