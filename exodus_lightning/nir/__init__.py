"""Export and import networks through NIR (the Neuromorphic Intermediate Representation).

``to_nir(model, sample_input, dt)`` writes a trained network as a ``nir.NIRGraph`` (save it with
``nir.write``); ``from_nir(graph_or_path)`` builds our layers from a graph or a .nir file, ours
or another library's. How our discrete steps map onto NIR's ODEs is in :mod:`.convention`;
what NIR cannot express is in :mod:`.export`. Needs ``pip install nir``.
"""

try:
    import nir  # noqa: F401
except ImportError as error:  # an optional dependency
    raise ImportError("exodus_lightning.nir needs the nir package: pip install "
                      "'exodus-lightning[nir]' (or pip install nir)") from error

from .export import NIRExportError, NIRLossWarning, to_nir
from .load import NIRImportError, NIRImportWarning, from_nir
from .network import NIRNetwork
from .scale import Scale

__all__ = [
    "NIRExportError",
    "NIRImportError",
    "NIRImportWarning",
    "NIRLossWarning",
    "NIRNetwork",
    "Scale",
    "from_nir",
    "to_nir",
]
