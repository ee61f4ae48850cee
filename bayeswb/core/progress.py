"""Progress bars: one for a long run's chunks (host side), one fed from compiled loops.

Both are tqdm bars that show only where a person is watching (stderr a terminal, or a
notebook), never in a CI log.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

Array = jax.Array


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar: Jupyter's widget in a notebook where ipywidgets is installed, else the
    text bar (tqdm.auto would warn there that IProgress is missing).

    Example:
        >>> type(tqdm(total=3, disable=True)).__module__  # outside a notebook
        'tqdm.std'
    """
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401  (what the widget bar draws with)
            from tqdm.notebook import tqdm as widget_bar

            return widget_bar(*args, **kwargs)
        except ImportError:
            pass
    from tqdm.std import tqdm as text_bar

    return text_bar(*args, **kwargs)


def progress_bar(show: bool | None, total: int, initial: int, unit: str) -> Any:
    """A bar counting ``unit``s that stays on screen when done; ``show=None``: only where a
    person is watching (stderr a terminal, or a notebook), never in a CI log."""
    if show is None:
        show = sys.stderr.isatty() or in_notebook()
    return tqdm(total=total, initial=initial, unit=unit, disable=not show)


_BARS: dict[str, Any] = {}
# host callbacks may run on several threads at once: once in a full test run, scld's
# training failed with a KeyError where a bar it had just read was deleted before its own
# `del`; so the bars are opened, moved and closed under one lock, and closed with `pop`
_BARS_LOCK = threading.Lock()


def _progress_host(label: str, total: int, first: int, done: Any, loss: Any) -> None:
    # one bar per training run; vmapped runs report together (``done`` and ``loss`` one
    # entry per run: the bar follows the furthest step and shows the runs' mean loss)
    done = int(np.max(done))
    with _BARS_LOCK:
        bar = _BARS.get(label)
        if bar is None:
            if done > first:
                return
            watched = sys.stderr.isatty() or in_notebook()
            bar = _BARS[label] = tqdm(total=total, desc=label, disable=not watched, leave=False)
        bar.update(max(0, done - bar.n))
        bar.set_postfix(loss=f"{float(np.mean(loss)):.4g}", refresh=False)
        if done >= total:
            bar.close()
            _BARS.pop(label, None)


def batched_callback(host: Callable[..., None], *args: Array) -> None:
    """``jax.debug.callback(host, *args)``, one call per call site however many vmaps
    surround it: under vmap ``host`` gets the whole batch (a leading axis on the batched
    arguments). JAX unrolls a vmapped ``jax.debug.callback`` into one callback per lane
    (flow_is's program for 16 chains had 35 callbacks; a host counter under 64 vmapped
    particles grew consensus over smc's program from 6,800 lines to 38,000).

    Example:
        >>> seen = []
        >>> f = jax.jit(jax.vmap(jax.vmap(lambda x: batched_callback(seen.append, x))))
        >>> f(jax.numpy.ones((3, 5))); jax.effects_barrier()
        >>> [a.shape for a in seen]
        [(3, 5)]
    """

    @jax.custom_batching.custom_vmap
    def call(*values: Array) -> Array:
        jax.debug.callback(host, *values)
        return values[0]

    @call.def_vmap
    def _(axis_size: int, in_batched: list[bool], *values: Array) -> Any:
        return call(*values), in_batched[0]

    call(*args)


def report_progress(label: str, step: Array, num_steps: int, loss: Array) -> None:
    """Inside a compiled loop over ``num_steps`` steps (``step`` counts from 0): every
    ~2% of the steps, hand ``loss`` to a host-side tqdm bar named ``label`` through
    :func:`batched_callback` (vmapped runs report together). The bar is silent when stderr
    is not a terminal; runs with fewer than 2 reports show none."""
    every = max(1, num_steps // 50)
    if num_steps < 2 * every:
        return
    host = functools.partial(_progress_host, label, num_steps, every)
    done = step + 1
    report = (done % every == 0) | (done == num_steps)
    jax.lax.cond(report, lambda: batched_callback(host, done, loss), lambda: None)
