"""SynthFace: procedurally generated faces with exact ground truth (``geometry`` builds the 3-D
head and its projection; ``synthface`` composes the scene, painted in C by ``csrc/image/raster.c``)."""
from .downscale import Downscaled, synthface_at
from .synthface import SUBSETS, SynthFace, subsets_of

__all__ = ["SynthFace", "SUBSETS", "subsets_of", "Downscaled", "synthface_at"]
