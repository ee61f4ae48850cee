"""The verdict's vocabulary: a :class:`Check`, the :class:`Verdict` of a run, the
warning a failed verdict raises, and the reductions every group of checks shares."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np


class UnreliableRunWarning(UserWarning):
    """A run's verdict found a reason not to trust its draws or its log Z."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One diagnostic: its measured ``value``, the ``threshold`` it is held to, whether it
    passed (``ok``), a one-line ``message`` and, when it failed, ``advice`` on what to try."""

    name: str
    value: float
    threshold: float
    ok: bool
    message: str
    advice: str = ""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Every check that applied to a run; ``ok`` when all passed.

    ``str(verdict)`` is one line: ``"verdict: fine (...)"`` or ``"verdict: UNRELIABLE
    (...); try: ..."``.
    """

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def __str__(self) -> str:
        if not self.checks:
            return "verdict: no diagnostic applies to this run"
        if self.ok:
            return "verdict: fine (" + "; ".join(c.message for c in self.checks) + ")"
        failed = self.failed
        advice = "; ".join(dict.fromkeys(c.advice for c in failed if c.advice))
        line = "verdict: UNRELIABLE (" + "; ".join(c.message for c in failed) + ")"
        return line + (f"; try: {advice}" if advice else "")

    def to_dict(self) -> dict[str, Any]:
        """The checks as plain data (for tables and JSON)."""
        return {"ok": self.ok, "checks": [dataclasses.asdict(c) for c in self.checks]}


def group(idata: az.InferenceData, name: str) -> Any:
    return getattr(idata, name, None) if name in idata.groups() else None


# the fewest draws per chain for which split R-hat and ESS are defined
MIN_DRAWS = 4


def ess_threshold(num_units: int) -> float:
    return 100.0 * min(num_units, 4)


def optional(check: Check | None) -> list[Check]:
    return [] if check is None else [check]


def max_over(dataset: Any) -> float:
    return reduce_over(dataset, np.nanmax, -math.inf)


def whole(count: float) -> str:
    """An effective sample size as printed: its whole part, or ``nan`` where it is
    undefined (draws that are NaN or never moved).

    Example:
        >>> whole(199.7), whole(math.nan)
        ('199', 'nan')
    """
    return str(math.floor(count)) if math.isfinite(count) else "nan"


def min_over(dataset: Any) -> float:
    return reduce_over(dataset, np.nanmin, math.inf)


def reduce_over(dataset: Any, reduce: Callable[..., Any], empty: float) -> float:
    """``reduce`` over every value of every variable, NaN ignored unless all are NaN (then
    NaN: the statistic is undefined, as for a chain that never moved)."""
    values = [np.ravel(dataset[name].values) for name in dataset.data_vars]
    values = [v for v in values if v.size]
    if not values:
        return empty
    joined = np.concatenate(values)
    if np.all(np.isnan(joined)):
        return math.nan
    return float(reduce(joined))
