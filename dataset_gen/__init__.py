"""Design space, cycle-level accelerator simulator and simulator-dataset generation."""

__version__ = "0.1.0"
