"""exodus-lightning: fast, exact (EXODUS) training of spiking neural networks with Lightning."""

__version__ = "0.1.0"
