"""The core: what every layer above shares and nothing below it.

Target, config base, registries (samplers and models), Draws, weights arithmetic,
Result and its diagnostics. Imports only jax, numpy, arviz and each other; never the
execution layer, the sampler families, the models or the applications.
"""
