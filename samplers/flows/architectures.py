"""Flow architectures: building a flow, and the architecture options, declared once.

A flow is a flowjax ``Transformed`` distribution: a standard normal base on R^dim pushed
through flowjax's own bijections (planar layers, affine or rational-quadratic-spline
coupling layers, masked autoregressive layers), or through the radial layers of Rezende
and Mohamed (2015) (:class:`~.bijections.Radial`), followed by a trainable elementwise
affine map ``x = loc + scale * y`` that sets the flow's overall location and scale.

:class:`FlowArchitecture` declares the options that choose the architecture; the flow
configs inherit them (``flow_vi``, ``flow_is``, ``smc_flow``, ``flow_mcmc``), and ``snf``,
whose coupling blocks use some of them, takes those with :func:`architecture_option`. A
sampler that wants another default or fewer flow types restates only that
(:func:`architecture_option`); name, doc and check stay the ones declared here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flowjax.bijections import Affine, Chain, RationalQuadraticSpline
from flowjax.distributions import StandardNormal, Transformed
from flowjax.flows import coupling_flow, masked_autoregressive_flow, planar_flow

from bayeswb.core.config import Check, SamplerConfig, one_of, option, positive, positive_int
from bayeswb.samplers.flows.bijections import radial_flow

Array = jax.Array

FLOW_TYPES = ("planar", "radial", "affine_coupling", "spline_coupling", "maf")
"""Flow architectures: Rezende-Mohamed planar and radial stacks, RealNVP-style affine
coupling (Dinh et al. 2017), rational-quadratic-spline coupling (Durkan et al. 2019),
masked autoregressive flow (Papamakarios et al. 2017)."""

INVERTIBLE_FLOW_TYPES = ("radial", "affine_coupling", "spline_coupling", "maf")
"""Flows with an analytic inverse, so that ``log_prob`` works at any point (the tanh
planar layer has no closed-form inverse)."""


def make_flow(
    key: Array,
    dim: int,
    flow_type: str = "affine_coupling",
    num_layers: int = 8,
    hidden_width: int = 32,
    num_knots: int = 8,
    spline_interval: float = 4.0,
    loc: Array | float = 0.0,
    scale: Array | float = 1.0,
    invert: bool = True,
) -> Transformed:
    """A flow on R^dim: flowjax layers of ``flow_type`` then an affine ``loc + scale * y``.

    ``invert`` is flowjax's switch between a fast ``log_prob`` (True) and a fast
    ``sample`` (False); it only matters for ``maf``, where one direction is sequential
    over coordinates. Planar layers (Rezende and Mohamed 2015, eq. 10,
    ``f(z) = z + u tanh(w^T z + b)``, interleaved by flowjax with coordinate
    permutations, which have unit Jacobian) and radial layers (eq. 14) are applied in the
    sampling direction, as in the paper; a planar flow can sample and score its own
    samples (``sample_and_log_prob``) but not evaluate ``log_prob`` at an arbitrary point.

    Example:
        >>> flow = make_flow(jax.random.key(0), 2, "spline_coupling", num_layers=2)
        >>> x = flow.sample(jax.random.key(1), (3,))
        >>> x.shape, flow.log_prob(x).shape
        ((3, 2), (3,))
    """
    if flow_type not in FLOW_TYPES:
        raise ValueError(f"flow_type must be one of {FLOW_TYPES}, got {flow_type!r}")
    if flow_type in ("affine_coupling", "spline_coupling") and dim < 2:
        raise ValueError(f"flow_type {flow_type!r} needs dim >= 2, got dim={dim}")
    # equinox types the base's AbstractVar cond_shape as a field, which mypy then wants
    # in __init__; flowjax fills it with a ClassVar (equinox #1123)
    base = StandardNormal((dim,))  # type: ignore[call-arg]
    common: dict[str, Any] = {"base_dist": base, "flow_layers": num_layers}
    if flow_type == "planar":
        flow = planar_flow(key, invert=False, **common)
    elif flow_type == "radial":
        flow = radial_flow(key, **common)
    elif flow_type == "affine_coupling":
        flow = coupling_flow(key, nn_width=hidden_width, invert=invert, **common)
    elif flow_type == "spline_coupling":
        spline = RationalQuadraticSpline(knots=num_knots, interval=spline_interval)
        flow = coupling_flow(
            key, transformer=spline, nn_width=hidden_width, invert=invert, **common
        )
    else:
        flow = masked_autoregressive_flow(key, nn_width=hidden_width, invert=invert, **common)
    loc = jnp.broadcast_to(jnp.asarray(loc, dtype=float), (dim,))
    scale = jnp.broadcast_to(jnp.asarray(scale, dtype=float), (dim,))
    return Transformed(base, Chain([flow.bijection, Affine(loc, scale)]))


@dataclasses.dataclass(frozen=True)
class FlowArchitecture(SamplerConfig):
    """The flow-architecture options (the arguments of :func:`make_flow`), declared once
    for every flow config.

    Example:
        >>> import jax
        >>> config = FlowArchitecture(num_layers=2)
        >>> config.build_flow(jax.random.key(0), 2).sample(jax.random.key(1)).shape
        (2,)
    """

    flow_type: str = option("affine_coupling", one_of(*FLOW_TYPES), "flow architecture")
    num_layers: int = option(8, positive_int, "flow layers")
    hidden_width: int = option(32, positive_int, "conditioner width (coupling, maf)")
    num_knots: int = option(8, positive_int, "spline knots (spline_coupling)")
    spline_interval: float = option(
        4.0, positive, "spline acts on [-B, B] of the standardised space, identity outside"
    )

    def build_flow(
        self,
        key: Array,
        dim: int,
        *,
        loc: Array | float = 0.0,
        scale: Array | float = 1.0,
        invert: bool = True,
    ) -> Transformed:
        """:func:`make_flow` with this config's architecture."""
        return make_flow(
            key,
            dim,
            self.flow_type,
            num_layers=self.num_layers,
            hidden_width=self.hidden_width,
            num_knots=self.num_knots,
            spline_interval=self.spline_interval,
            loc=loc,
            scale=scale,
            invert=invert,
        )


_DECLARED = object()


def architecture_option(name: str, default: Any = _DECLARED, check: Check | None = None) -> Any:
    """The :class:`FlowArchitecture` option ``name`` for another config: its doc, its
    check unless ``check`` narrows it, and its default unless ``default`` is given.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Small(FlowArchitecture):
        ...     num_layers: int = architecture_option("num_layers", 2)
        >>> Small().num_layers, Small().hidden_width
        (2, 32)
    """
    declared = FlowArchitecture.__dataclass_fields__[name]
    return option(
        declared.default if default is _DECLARED else default,
        declared.metadata["check"] if check is None else check,
        declared.metadata["doc"],
    )
