"""Face data: raw data-set formats (``formats``), landmark schemes (``schemes``), 5-point
alignment (``align``), augmentation (``augment``), data sets (``datasets``), the batch loader
(``loader``) and the SynthFace generator (``SynthFace``)."""
from .synth import SUBSETS, SynthFace, subsets_of

__all__ = ["SynthFace", "SUBSETS", "subsets_of"]
