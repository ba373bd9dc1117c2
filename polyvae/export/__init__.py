"""Exports of a model's latent CV to enhanced-sampling engines (PLUMED, Colvars, OpenMM) and files."""

from polyvae.export.colvar import colvar_for_model, write_colvar
from polyvae.export.colvars import COLVARS_ACTIVATIONS, write_colvars
from polyvae.export.openmm import EncoderCV, openmm_force, write_openmm
from polyvae.export.plumed import write_plumed
from polyvae.export.spec import EncoderSpec, ExportError, encoder_spec
from polyvae.export.torchscript import write_torchscript
from polyvae.io.colvar import read_colvar

__all__ = [
    "COLVARS_ACTIVATIONS",
    "EncoderCV",
    "EncoderSpec",
    "ExportError",
    "colvar_for_model",
    "encoder_spec",
    "openmm_force",
    "read_colvar",
    "write_colvar",
    "write_colvars",
    "write_openmm",
    "write_plumed",
    "write_torchscript",
]
