"""The execution layer: how a registered sampler's run becomes one compiled program.

``driver`` (vmap/shard_map over chains, lax.scan over steps), ``kernel`` (MCMC samplers
in pieces: start and step), ``sample`` (``bw.sample``: whole runs), ``long_run`` (the one
loop for chunked and batched runs, with Ctrl-C and progress), ``checkpoint`` and
``streaming``. Imports the core; never the sampler families, the models or the
applications.
"""
