"""Pair-distance marginals: kept importable here; they live in :mod:`polyvae.measures.marginals`,
below the model, which training and generation use too."""

from polyvae.measures.marginals import *  # noqa: F403
