"""The structure checks: kept importable here; they live in :mod:`polyvae.measures.validity`,
below the model, which training and generation use too."""

from polyvae.measures.validity import *  # noqa: F403
