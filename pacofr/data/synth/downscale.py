"""SynthFace below its smallest face (64 px): rendered at an integer multiple of the size and
box-averaged down."""
import numpy as np

from .synthface import SynthFace


class Downscaled:
    """``render_batch`` of a SynthFace rendered at factor * size, box-averaged by ``factor``:
    images averaged, landmarks rescaled (pixel centres at integers), parsing maps sampled at
    each block's centre; the other fields pass through."""

    def __init__(self, ds, factor):
        self.ds, self.f = ds, int(factor)

    def __len__(self):
        return len(self.ds)

    def render_batch(self, indices):
        b, f = self.ds.render_batch(indices), self.f
        B, S = b["image"].shape[:2]
        img = b["image"].reshape(B, S // f, f, S // f, f, 3).mean((2, 4))
        return {**b, "image": (img + 0.5).astype(np.uint8),
                "landmarks": ((b["landmarks"] + 0.5) / f - 0.5).astype(np.float32),
                "landmarks5": ((b["landmarks5"] + 0.5) / f - 0.5).astype(np.float32),
                "parsing": np.ascontiguousarray(b["parsing"][:, f // 2::f, f // 2::f])}


def synthface_at(size, seed=0, num_images=10000, num_identities=None):
    """SynthFace faces of side ``size``: the generator itself from 64 px up, else Downscaled."""
    factor = -(-64 // size)
    ds = SynthFace(seed=seed, size=size * factor, num_images=num_images, num_identities=num_identities)
    return ds if factor == 1 else Downscaled(ds, factor)
