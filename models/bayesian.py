"""Bayesian models written as numpyro programs, on data shipped with the package."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayeswb.models import register
from bayeswb.target import Target

# Rubin (1981), "Estimation in parallel randomized experiments", Table 2: estimated
# coaching effects and their standard errors in eight schools.
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_noncentered_model(y: jnp.ndarray, sigma: jnp.ndarray) -> None:
    """Eight schools, non-centred: theta = mu + tau * theta_tilde (Gelman et al., BDA3 5.5)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", y.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


@register("eight_schools_noncentered")
def eight_schools_noncentered() -> Target:
    """The eight-schools hierarchical model in its non-centred form (10 dimensions).

    Example:
        >>> t = eight_schools_noncentered()
        >>> t.dim
        10
    """
    return Target.from_numpyro(
        eight_schools_noncentered_model,
        jnp.asarray(EIGHT_SCHOOLS_Y),
        jnp.asarray(EIGHT_SCHOOLS_SIGMA),
        name="eight_schools_noncentered",
    )
