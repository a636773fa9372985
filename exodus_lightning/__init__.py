"""exodus-lightning: fast, exact (EXODUS) training of spiking neural networks with Lightning.

`from exodus_lightning import SpikingClassifier` is exodus_lightning.tasks.SpikingClassifier;
the subpackages are ops (custom ops), nn (layers), models, data, tasks, callbacks, loggers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["SpikingClassifier", "__version__"]

if TYPE_CHECKING:
    from exodus_lightning.tasks import SpikingClassifier


def __getattr__(name: str) -> Any:
    # Imported on first use: `import exodus_lightning.ops` should not pay for Lightning.
    if name == "SpikingClassifier":
        from exodus_lightning.tasks import SpikingClassifier

        return SpikingClassifier
    raise AttributeError(f"module 'exodus_lightning' has no attribute {name!r}")
