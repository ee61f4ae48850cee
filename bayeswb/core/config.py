"""Sampler configuration: frozen dataclasses whose fields carry their own checks.

Every sampler's config subclasses :class:`SamplerConfig`. A field declared with
:func:`option` names the check that its value must pass; all checks run in
``__post_init__``, so a bad value is a ``ValueError`` naming the field before anything
is compiled.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
from collections.abc import Callable
from typing import Any

import numpy as np

Check = Callable[[Any], str | None]

# integer options are counts that compiled programs hold in int32 (unless x64)
INT_LIMIT = 2**31


def plain(value: Any) -> Any:
    """``value`` with numpy scalars (also inside tuples and lists) as Python numbers, so an
    integer-like ``np.int64(2)`` is accepted wherever ``2`` is.

    Example:
        >>> plain((np.int64(2), np.float32(0.5), np.bool_(True)))
        (2, 0.5, True)
    """
    if isinstance(value, np.generic):
        return value.item()
    if type(value) in (tuple, list):  # not a NamedTuple (a Move): built field by field
        return type(value)(plain(item) for item in value)
    return value


def one_line(value: Any, limit: int = 200) -> str:
    """``repr(value)`` on one line (an array's repr spans several), at most ``limit``
    characters, for error messages.

    Example:
        >>> one_line(np.eye(2))
        'array([[1., 0.], [0., 1.]])'
    """
    text = re.sub(r"\s*\n\s*", " ", repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_declared(declared: Any, value: Any) -> Any:
    """An integer given for an option declared ``float`` (alone, optional or in a tuple)
    as a float, so that a compiled program gets a float constant; one too large for a
    float becomes inf (refused as not finite)."""
    if "float" not in str(declared):
        return value
    if _is_int(value):
        return _to_float(value)
    if type(value) is tuple and "tuple" in str(declared):
        return tuple(_to_float(item) if _is_int(item) else item for item in value)
    return value


def _to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, tuple | list):
        return all(_finite(item) for item in value)
    return True


def as_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as a Python int of at least ``minimum`` (integer-like values accepted),
    else a ValueError naming ``name``.

    Example:
        >>> as_count("chunk_size", np.int64(25))
        25
        >>> as_count("thin", 0)
        Traceback (most recent call last):
        ...
        ValueError: thin must be an integer >= 1 and below 2**31, got 0
    """
    if not _is_int(value) or not minimum <= value < INT_LIMIT:
        raise ValueError(
            f"{name} must be an integer >= {minimum} and below 2**31, got {one_line(value)}"
        )
    return int(value)


def option(default: Any, check: Check | None = None, doc: str = "") -> Any:
    """A config field with a default, a check (returns an error text or None) and a doc."""
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    # Python ints and floats (numpy scalars are made Python numbers first): a Fraction or
    # another numbers.Real is not a value a compiled program or a checkpoint takes
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    ok = _is_int(value) and 0 < value < INT_LIMIT
    return None if ok else "must be a positive integer below 2**31"


def non_negative_int(value: Any) -> str | None:
    ok = _is_int(value) and 0 <= value < INT_LIMIT
    return None if ok else "must be a non-negative integer below 2**31"


def positive(value: Any) -> str | None:
    return None if _is_real(value) and value > 0 else "must be a positive number"


def non_negative(value: Any) -> str | None:
    return None if _is_real(value) and value >= 0 else "must be a non-negative number"


def closed_unit_interval(value: Any) -> str | None:
    """Between 0 and 1, both included."""
    return None if _is_real(value) and 0 <= value <= 1 else "must be a number in [0, 1]"


def unit_interval(value: Any) -> str | None:
    """Strictly between 0 and 1."""
    return None if _is_real(value) and 0 < value < 1 else "must be a number in (0, 1)"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be True or False"


def optional(check: Check) -> Check:
    """``check``, with None also accepted (an option whose None means automatic)."""
    return lambda value: None if value is None else check(value)


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, str) and value in choices  # not `in` on an array
        return None if ok else f"must be one of {', '.join(map(repr, choices))}"

    return check


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Settings every sampler shares.

    For MCMC, ``num_chains`` chains of ``num_samples`` draws after ``num_warmup`` warmup
    steps. For particle methods, ``num_chains`` independent runs of ``num_samples``
    particles (``num_warmup`` is the method's own tuning or training length).
    """

    num_chains: int = option(4, positive_int, "independent chains or runs")
    num_samples: int = option(1000, positive_int, "draws per chain or particles per run")
    num_warmup: int = option(500, non_negative_int, "warmup or tuning steps per chain")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            given = plain(getattr(self, field.name))  # numpy scalars as Python numbers
            value = _as_declared(field.type, given)  # and ints as floats where declared
            object.__setattr__(self, field.name, value)
            if not _finite(value):
                raise ValueError(f"{field.name} must be finite, got {one_line(given)}")
            check = field.metadata.get("check")
            problem = None if check is None else check(value)
            if problem:
                raise ValueError(f"{field.name} {problem}, got {one_line(given)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def valid_num_samples(self, num_samples: int) -> int:
        """The largest ``num_samples`` at most ``num_samples`` that this config accepts
        (a sampler whose draws come in equal parts rounds down; others keep it)."""
        return num_samples


def make_config(config_cls: type[SamplerConfig], options: dict[str, Any]) -> SamplerConfig:
    """Build ``config_cls(**options)``; an unknown option is a ValueError naming it."""
    known = [f.name for f in dataclasses.fields(config_cls)]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown option {name!r} for {config_cls.__name__}{hint} "
                f"(known: {', '.join(known)})"
            )
    return config_cls(**options)


# --------------------------------------------------------------------------- saving


class UnsavableOption(ValueError):
    """A config value that cannot be written to a checkpoint (a function, a Move object)."""


_TAGS = ("tuple", "list", "dict", "array")


def _encode(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, numbers.Number) and hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, tuple | list):
        return {type(value).__name__: [_encode(name, item) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _encode(name, item) for key, item in value.items()}}
    if hasattr(value, "__array__") and hasattr(value, "dtype"):
        array = np.asarray(value)
        return {"array": array.tolist(), "dtype": str(array.dtype)}
    raise UnsavableOption(
        f"option {name}={value!r} cannot be written to a checkpoint (only numbers, strings, "
        "tuples, lists, dicts and arrays can); give it by name, or run without checkpoint="
    )


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    tag = next(iter(value), None)
    if tag == "tuple":
        return tuple(_decode(item) for item in value["tuple"])
    if tag == "list":
        return [_decode(item) for item in value["list"]]
    if tag == "dict":
        return {key: _decode(item) for key, item in value["dict"].items()}
    if tag == "array":
        return np.asarray(value["array"], dtype=value["dtype"])
    raise ValueError(f"not a saved config value: {value!r} (tags: {', '.join(_TAGS)})")


def config_to_json(config: SamplerConfig) -> dict[str, Any]:
    """The config as JSON-ready values that :func:`config_from_json` turns back into an
    equal config (tuples stay tuples, arrays keep their dtype). A value that cannot be
    saved (a function, a Move object) is an :class:`UnsavableOption` naming the option.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Demo(SamplerConfig):
        ...     scales: tuple = option((1.0, 2.0))
        >>> saved = config_to_json(Demo(num_chains=2))
        >>> saved["scales"]
        {'tuple': [1.0, 2.0]}
        >>> config_from_json(Demo, saved) == Demo(num_chains=2)
        True
    """
    return {f.name: _encode(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_json(config_cls: type[SamplerConfig], saved: dict[str, Any]) -> SamplerConfig:
    """The config written by :func:`config_to_json`, checked like any other."""
    return make_config(config_cls, {name: _decode(value) for name, value in saved.items()})
