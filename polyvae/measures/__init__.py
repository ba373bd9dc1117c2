"""Measurements of structures that training, generation and analysis share.

:mod:`~polyvae.measures.validity` fits the structure checks (bonds, angles, contacts,
chirality) on training frames and applies them to any structure;
:mod:`~polyvae.measures.marginals` compares the pair-distance distributions of two sets
of frames. Both work on NumPy positions and know nothing of models, so the model, its
training and the analyses above them can all use them.
"""
