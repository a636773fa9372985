"""Scripts reproducing the EXODUS paper's claims; run each as ``python -m experiments.<name>``."""
