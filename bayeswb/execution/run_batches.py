"""The long-run strategy of samplers of independent runs: batches along the run axis.

Particle, importance and variational samplers (smc, ais, is, amis, vis, flow_vi, snf, the
VI baselines, ...) make ``num_chains`` independent runs through
:func:`bayeswb.execution.driver.run_chains`. In batches, the sampler's own ``run`` is
called with ``num_chains = chunk_size`` and a :class:`~bayeswb.execution.driver.ChainLayout`
saying which runs of the whole these are (``first`` is a traced argument: one compiled
program serves every batch, plus one for a shorter last batch). The runs get the keys the
whole run would give them, so the batches together make the whole run's draws, up to float
rounding: XLA vectorises a batch of one run differently from a batch of many, as it does
chains on different devices, and float32 samplers with discrete adaptive decisions can
amplify those last bits (AIS's step-size adaptation on the banana: whole and one-run
batches differ from step 1; with ``x64=True`` they agree to 1e-7). A resumed run makes bit
for bit the draws of the uninterrupted run with the same ``chunk_size``.

Cost counters are summed over batches. Work a sampler does once per call before its runs
(a pilot shared by all runs) is done once per batch, and counted so.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.config import SamplerConfig
from bayeswb.core.draws import exact_count
from bayeswb.core.result import Result
from bayeswb.core.sampler import SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution.checkpoint import flat, unflat
from bayeswb.execution.driver import ChainLayout, compile_program, make_chain_mesh, to_host
from bayeswb.execution.long_run import LongRun, PieceStore
from bayeswb.execution.whole import constrained_run

Array = jax.Array


@functools.lru_cache(maxsize=16)
def batch_program(
    spec: SamplerSpec, target: Target, config: SamplerConfig, total: int, mesh: Any
) -> Any:
    """``config.num_chains`` runs, starting at run ``first`` of ``total``, as one program."""

    def program(key: Array, first: Array) -> tuple[dict[str, Any], Any]:
        layout = ChainLayout(mesh=mesh, total=total, first=first)
        draws, posterior, warmup_posterior = constrained_run(key, spec, target, config, layout)
        counts = (draws.n_grad_evals, draws.n_logdensity_evals)  # totalled on the host
        runs = draws._replace(n_grad_evals=None, n_logdensity_evals=None)
        piece = {"draws": runs, "posterior": posterior, "warmup_posterior": warmup_posterior}
        return piece, counts

    return jax.jit(program)


@dataclasses.dataclass
class RunBatches:
    """Strategy state: the whole run's key and the devices each batch is spread over."""

    kind: ClassVar[str] = "runs"
    unit: ClassVar[str] = "run"
    axis: ClassVar[int] = 0

    key: Array
    devices: Any

    def total(self, config: SamplerConfig) -> int:
        return config.num_chains

    def compile(self, run: LongRun, length: int) -> Any:
        program = self._program(run, length)
        # the host keeps every batch's draws
        kept = run.config.num_chains / length
        return compile_program(program, self.key, jnp.asarray(0), kept=kept)

    def _program(self, run: LongRun, size: int) -> Any:
        config = dataclasses.replace(run.config, num_chains=size)
        mesh = make_chain_mesh(size, self.devices)
        return batch_program(run.spec, run.target, config, run.config.num_chains, mesh)

    def advance(self, run: LongRun, program: Any, length: int) -> tuple[Any, int, int]:
        piece, (grads, evals) = to_host(program(self.key, jnp.asarray(run.done)))
        return piece, exact_count(grads), exact_count(evals)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, flat("key", self.key)

    def result(self, run: LongRun, partial: bool) -> Result:
        assert run.store is not None
        runs = run.store.gathered()
        draws = runs["draws"]._replace(
            n_grad_evals=run.n_grad, n_logdensity_evals=run.n_logdensity
        )
        return run.to_result(draws, runs["posterior"], runs["warmup_posterior"], partial)

    @classmethod
    def start(
        cls,
        spec: SamplerSpec,
        target: Target,
        config: SamplerConfig,
        key: Array,
        devices: Any,
        chunk_size: int,
        checkpoint: str | None,
    ) -> LongRun:
        """A batched run with nothing made yet (the batches compile as they come)."""
        store = PieceStore(cls.axis, config.num_chains)
        return LongRun(spec, target, config, cls(key, devices), chunk_size, checkpoint, store)

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        spec: SamplerSpec,
        target: Target,
        config: SamplerConfig,
        path: str,
        devices: Any,
    ) -> LongRun:
        """The batched run saved in a checkpoint, its finished runs checked and restored."""
        key = unflat("key", jax.random.key(0), arrays)
        run = cls.start(spec, target, config, key, devices, meta["chunk_size"], path)
        run.done, run.n_grad, run.n_logdensity = meta["done"], meta["n_grad"], meta["n_logdensity"]
        if not meta["kept"]:
            return run
        one = dataclasses.replace(config, num_chains=1)
        piece_like, _ = jax.eval_shape(
            batch_program(spec, target, one, config.num_chains, None), key, jnp.asarray(0)
        )
        assert run.store is not None
        run.store.restore(piece_like, meta["kept"], arrays)
        return run
