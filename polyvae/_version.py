"""The version of polyvae (read by the build and written into every model file)."""

__version__ = "0.1.0"
