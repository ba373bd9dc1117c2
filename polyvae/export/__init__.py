"""Exports of a model's latent CV to enhanced-sampling engines (PLUMED, Colvars) and files."""

from polyvae.export.spec import EncoderSpec, ExportError, encoder_spec

__all__ = ["EncoderSpec", "ExportError", "encoder_spec"]
