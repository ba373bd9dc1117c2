"""From positions to what the network sees, and back.

:mod:`~polyvae.features.pipeline` centers, aligns, flattens and standardizes frames (the
:class:`~polyvae.features.pipeline.Pipeline` a model keeps); :mod:`~polyvae.features.elements`
and :mod:`~polyvae.features.topology` decide which bonds a molecule has;
:mod:`~polyvae.features.internal` turns a bond graph into a Z-matrix and back to positions;
:mod:`~polyvae.features.layout` is the internal-coordinate decoder's side of the pipeline
(its features, likelihood terms and the refinement of rebuilt structures).
"""
