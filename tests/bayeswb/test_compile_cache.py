"""The persistent compilation cache (bayeswb/execution/compile_cache.py): a second process
reads the programs the first compiled and draws the same numbers; the user's own JAX
setting and BAYESWB_CACHE_DIR=off are respected; a folder that cannot be made is one line.
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import bayeswb as bw

RUN = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from jax._src import monitoring
    hits = []
    monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None
    )
    import jax
    import bayeswb as bw
    t = bw.models.get("gaussian", dim=3)
    r = bw.sample(t, "mala", seed=4, num_chains=2, num_samples=50, num_warmup=50)
    np.save(sys.argv[1], r.positions)
    print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "hits": len(hits)}))
    """
)


def run_process(tmp_path, name, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPIL")}
    environment.pop("BAYESWB_CACHE_DIR", None)
    environment.update(env)
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / f"{name}.npy")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), np.load(tmp_path / f"{name}.npy")


def test_a_second_process_reads_the_compiled_programs_and_draws_the_same(tmp_path):
    folder = tmp_path / "cache"
    first, draws = run_process(tmp_path, "first", BAYESWB_CACHE_DIR=str(folder))
    assert first == {"dir": str(folder), "hits": 0}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # executable code: owner only
    assert any(p.name.endswith("-cache") for p in folder.iterdir())
    second, again = run_process(tmp_path, "second", BAYESWB_CACHE_DIR=str(folder))
    assert second["hits"] > 0
    np.testing.assert_array_equal(again, draws)


def test_off_and_the_users_own_jax_folder_are_respected(tmp_path):
    off, _ = run_process(tmp_path, "off", BAYESWB_CACHE_DIR="off")
    assert off == {"dir": None, "hits": 0}
    own = tmp_path / "own"
    mine, _ = run_process(tmp_path, "own", JAX_COMPILATION_CACHE_DIR=str(own))
    assert mine["dir"] == str(own)


def test_a_folder_that_cannot_be_made_is_one_clear_line(tmp_path):
    bw.set_compile_cache  # noqa: B018 -- bayeswb's first use sets up its cache
    before = jax.config.jax_compilation_cache_dir
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"^compile cache: cannot create the folder .*a_file"):
        bw.set_compile_cache(blocker / "cache")
    assert jax.config.jax_compilation_cache_dir == before  # unchanged by the refusal


def test_on_by_default_in_the_platforms_cache_folder(tmp_path):
    default, _ = run_process(tmp_path, "default", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert default["dir"] == str(tmp_path / "xdg" / "bayeswb" / "jax")
