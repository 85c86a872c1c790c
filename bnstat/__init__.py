"""bnstat: inspect, gate and recalibrate the BatchNorm statistics inside checkpoints."""

from bnstat.version import __version__

__all__ = ["__version__"]
