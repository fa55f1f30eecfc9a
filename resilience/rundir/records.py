"""Per-request records the run directory keeps: kept trace ids and acknowledged writes.

The load workers emit them as they go (``resilience.load.samples`` carries them over the
worker pipe); the run directory stores one JSON line each (``trace_ids.jsonl``,
``writes.jsonl``); the evidence gathering and the analysis read them back. Times are
seconds on the experiment clock (``t``: when the request was sent), latencies seconds.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

TraceReason = Literal["failed", "slow", "sampled"]


@dataclass(frozen=True)
class TraceRef:
    """A request whose trace id was kept: why (failed, slow, sampled) and what it got."""

    worker: int
    trace_id: str
    span_id: str
    endpoint: str
    t: float
    latency: float
    outcome: str
    status: int
    reason: TraceReason


@dataclass(frozen=True)
class WriteAck:
    """An acknowledged write: the record ``id`` the target said it stored."""

    worker: int
    id: object
    endpoint: str
    t: float
    status: int


def numeric_key(key: str) -> int | None:
    """``key`` as an int when it is the canonical decimal form of one (no sign, no
    leading zero, at most 18 digits: an int64), else None."""
    if not (key.isascii() and key.isdigit()) or len(key) > 18:
        return None
    if len(key) > 1 and key[0] == "0":
        return None
    return int(key)


@dataclass
class EndpointWrites:
    """One write endpoint's acknowledged writes, summarised for the set check without
    holding them: how many, which ids were acknowledged twice (in the order first seen),
    every distinct id (as sorted int64 when numeric; the rest as text), and the first
    acknowledgement of each id the read-back planned to read."""

    endpoint: str
    acknowledged: int = 0
    distinct: int = 0
    duplicated: list[str] = field(default_factory=list)
    numeric: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Sorted distinct ids written in canonical decimal form."""
    other: frozenset[str] = frozenset()
    """Distinct ids that are not (kept only when all of them are digit strings, for the
    range check; otherwise ``all_digits`` is False and they are not needed)."""
    all_digits: bool = True
    first: dict[str, WriteAck] = field(default_factory=dict)

    def acked(self, key: str) -> bool:
        """Whether id ``key`` (as text) was acknowledged (numeric and digit ids only)."""
        number = numeric_key(key)
        if number is not None:
            at = int(np.searchsorted(self.numeric, number))
            return at < len(self.numeric) and int(self.numeric[at]) == number
        return key in self.other

    def bounds(self) -> tuple[int, int] | None:
        """The smallest and largest acknowledged id, when every id is a digit string."""
        if not self.all_digits or not self.distinct:
            return None
        values = [int(k) for k in self.other]
        if len(self.numeric):
            values.extend((int(self.numeric[0]), int(self.numeric[-1])))
        return min(values), max(values)


@dataclass
class WriteSummary:
    """Every write endpoint's ``EndpointWrites`` (``resilience.rundir.load.scan_writes``
    reads ``writes.jsonl`` into one in a single pass)."""

    endpoints: dict[str, EndpointWrites] = field(default_factory=dict)

    @property
    def acknowledged(self) -> int:
        return sum(e.acknowledged for e in self.endpoints.values())

    def __bool__(self) -> bool:
        return self.acknowledged > 0

    @classmethod
    def from_acks(cls, acks: Iterable[WriteAck]) -> WriteSummary:
        """From acknowledgements in memory (tests, small runs): every id's first kept."""
        builders: dict[str, WriteKeys] = {}
        for ack in acks:
            builder = builders.get(ack.endpoint)
            if builder is None:
                builder = builders[ack.endpoint] = WriteKeys(ack.endpoint, keep_text=True)
            builder.add(str(ack.id), ack, keep_first=True)
        return cls({name: b.summary() for name, b in builders.items()})


class WriteKeys:
    """Builds one endpoint's ``EndpointWrites`` from acknowledgements in order: numeric ids
    in an int64 array (8 bytes each; their positions only once another id came between
    them), other ids by their hash, so a million ids cost about 10 MB; a hash seen twice is
    confirmed on the text (a second pass) before it counts as a duplicate."""

    def __init__(self, endpoint: str, *, keep_text: bool = False) -> None:
        self.endpoint = endpoint
        self._by_text: dict[str, list[int]] | None = {} if keep_text else None
        """``keep_text``: every non-numeric id's positions, by its text (small inputs)."""
        self.count = 0
        self._numbers = array("q")
        self._number_at: array[int] | None = None
        """Each number's position among all ids; None while it equals its index."""
        self._hashes = array("q")
        self._texts: dict[str, int] = {}
        """Non-canonical digit ids as text (rare): the range check needs them."""
        self.all_digits = True
        self.first: dict[str, WriteAck] = {}

    def add(self, key: str, ack: WriteAck | None, *, keep_first: bool) -> None:
        number = numeric_key(key)
        if number is not None:
            self.add_numbers(np.asarray([number], np.int64), np.zeros(1, np.int64))
        else:
            self.add_other(key, 0)
        if keep_first and ack is not None and key not in self.first:
            self.first[key] = ack
        self.count += 1

    def add_numbers(self, values: np.ndarray, positions: np.ndarray) -> None:
        """Canonical numeric ids in order, acknowledged at ``positions`` (after ``count``);
        the caller adds the others with ``add_other`` and then ``skip``s."""
        at = positions.astype(np.int64) + self.count
        start = len(self._numbers)
        if self._number_at is None and not np.array_equal(at, np.arange(start, start + len(at))):
            self._number_at = array("q", range(start))
        if self._number_at is not None:
            self._number_at.frombytes(at.tobytes())
        self._numbers.frombytes(values.astype(np.int64).tobytes())

    def add_other(self, key: str, position: int) -> None:
        """One id that is not a canonical number, at ``position`` after ``count``."""
        if self._by_text is not None:
            self._by_text.setdefault(key, []).append(self.count + position)
        else:
            self._hashes.append(hash(key))
        if key.isdigit():
            self._texts.setdefault(key, self.count + position)
        else:
            self.all_digits = False

    def skip(self, n: int) -> None:
        self.count += n

    def suspect_hashes(self) -> set[int]:
        """Hashes of non-numeric ids seen more than once (to confirm on their text)."""
        hashes = np.frombuffer(self._hashes, np.int64)
        if len(hashes) < 2:
            return set()
        values, counts = np.unique(hashes, return_counts=True)
        return set(values[counts > 1].tolist())

    def _numeric(self) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """The distinct numbers (sorted) and (first position, id) of those seen twice."""
        numbers = np.frombuffer(self._numbers, np.int64)
        at = None if self._number_at is None else np.frombuffer(self._number_at, np.int64)
        ordered = np.sort(numbers)
        again = ordered[1:] == ordered[:-1]
        keep = np.ones(len(ordered), bool)
        keep[1:] = ~again
        values = ordered[keep]
        repeated = np.unique(ordered[1:][again])
        del ordered, again, keep
        if not len(repeated):
            return values, []
        where = np.flatnonzero(np.isin(numbers, repeated))
        positions = where if at is None else at[where]
        seen, first = np.unique(numbers[where], return_index=True)  # first by index...
        if at is not None:  # ...or, when others came between, by position
            first = np.asarray([positions[numbers[where] == v].argmin() for v in seen.tolist()])
        return values, [
            (int(positions[f]), str(v)) for v, f in zip(seen.tolist(), first.tolist(), strict=True)
        ]

    def summary(self, confirmed: dict[str, list[int]] | None = None) -> EndpointWrites:
        """The summary; ``confirmed``: per non-numeric id seen under a suspect hash, the
        positions it was acknowledged at (from a second pass). Without it, ids are
        compared by their text kept in memory (``from_acks``)."""
        values, twice = self._numeric()
        if self._by_text is not None:
            confirmed = self._by_text
            distinct_other = len(self._by_text)
        else:
            distinct_other = len(np.unique(np.frombuffer(self._hashes, np.int64)))
        for key, positions in (confirmed or {}).items():
            if len(positions) > 1:
                twice.append((min(positions), key))
        twice.sort()
        return EndpointWrites(
            endpoint=self.endpoint,
            acknowledged=self.count,
            distinct=len(values) + distinct_other,
            duplicated=[key for _, key in twice],
            numeric=values,
            other=frozenset(self._texts) if self.all_digits else frozenset(),
            all_digits=self.all_digits,
            first=self.first,
        )
