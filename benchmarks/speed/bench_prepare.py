"""`pacofr prepare` throughput, and how close detected alignment comes to annotated alignment.

1. Speed: a folder of real photos (every image of ../shared/data, each also re-framed a few
   times so that no two files are equal) through `prepare` with 1 and 2 worker processes:
   photos/s and faces/s end to end (plan with hashes, decode, detect, align, JPEG, shards).
2. Alignment: on every photo with 68-point ground truth, the detector's face and the gap
   between the crop aligned from its 5 points and the crop aligned from the true 68 points
   (mean shift of the 68 points between the crops, over the inter-ocular distance).

    python benchmarks/speed/bench_prepare.py [--copies 4] [--save]
    python benchmarks/speed/bench_prepare.py --quick      # 12 photos, 1 framing: seconds

Before timing, the detector must find a face on at least 90% of the annotated photos, and the
crop aligned from the true 5 points must sit within 15% of the inter-ocular distance of the
68-point alignment; then every photo of the speed folder must come out as a shard entry or a
named skip.
"""
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image

from pacofr.data import detect, formats
from pacofr.data.prepare import prepare
from pacofr.testing import bench
from pacofr.testing.data import photos_with_68_points, shared_data

DATA = shared_data()


def make_folder(root, copies, limit=None):
    """Every image of ../shared/data (the first `limit`), plus `copies - 1` re-framings (a border
    of 8k pixels)."""
    n = 0
    for path in formats.list_images(DATA)[:limit]:
        image = formats.read_image(path)
        for k in range(copies):
            framed = np.pad(image, ((8 * k, 8 * k), (8 * k, 8 * k), (0, 0)), mode="edge")
            Image.fromarray(framed).save(root / f"{n:04d}_{k}_{path.stem}.jpg", quality=92)
        n += 1
    return n * copies


def speed(copies, limit=None):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "src"
        src.mkdir()
        photos = make_folder(src, copies, limit)
        for workers in (1, 2):
            t = time.perf_counter()
            summary = prepare(src, pathlib.Path(tmp) / f"out{workers}", workers=workers, progress=False)
            dt = time.perf_counter() - t
            rows.append({"workers": workers, "photos": photos, "faces": summary["faces"], "seconds": round(dt, 2),
                         "photos_per_s": round(photos / dt, 2), "faces_per_s": round(summary["faces"] / dt, 2),
                         "summary": summary})
    return rows


def alignment(limit=None):
    rows = []
    for name, path, gt in photos_with_68_points(DATA)[:limit]:
        image = formats.read_image(path)
        t = time.perf_counter()
        faces = detect.detect_faces(image)
        ms = 1000 * (time.perf_counter() - t)
        eyes = gt[36:48].mean(0)
        face = min(faces, key=lambda f: np.linalg.norm(f.five_points.mean(0) - eyes), default=None)
        iod = float(np.linalg.norm(gt[45] - gt[36]))
        idx = list(detect.DLIB5_IN_68)
        rows.append({"photo": name, "size": f"{image.shape[1]}x{image.shape[0]}", "found": face is not None,
                     "score": round(face.score, 3) if face else None, "detect_ms": round(ms, 1),
                     "points_err_iod": round(float(np.linalg.norm(face.five_points - gt[idx], axis=1).mean()
                                                   / iod), 4) if face else None,
                     "gap_detected": round(detect.alignment_gap(face.five_points, gt), 4) if face else None,
                     "gap_true_points": round(detect.alignment_gap(gt[idx], gt), 4)})
    return rows


def check(rep, rows):
    found = [r for r in rows if r["found"]]
    rep.require("a face found on >= 90% of the annotated photos", len(found) >= 0.9 * len(rows),
                f"{len(found)} of {len(rows)}")
    worst = max(r["gap_true_points"] for r in rows)
    rep.require("true 5 points align within 0.15 IOD of the 68-point alignment", worst <= 0.15, f"worst {worst}")


def main(argv=None):
    ap = bench.parser(__doc__)
    ap.add_argument("--copies", type=int, default=4, help="framings of each photo in the speed folder")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"bench_prepare: no shared data at {DATA} (set PACOFR_SHARED_DATA)")
    limit = 12 if args.quick else None
    if args.quick:
        args.copies = 1
    rep = bench.Report("bench_prepare", args, dtype="uint8")
    rows = alignment(limit)
    check(rep, rows)
    result = {"speed": speed(args.copies, limit), "alignment": rows}
    for r in result["speed"]:
        s = r.pop("summary")
        rep.require(f"{r['workers']} worker(s): every photo a face or a named skip",
                    s["faces"] + s["skipped"] >= r["photos"] == s["photos"],
                    f"{s['faces']} faces, {s['skipped']} skipped")
    rep.print("\n| workers | photos | faces | s | photos/s | faces/s |\n|---|---|---|---|---|---|")
    for r in result["speed"]:
        rep.print(f"| {r['workers']} | {r['photos']} | {r['faces']} | {r['seconds']} | {r['photos_per_s']} | "
                  f"{r['faces_per_s']} |")
    rep.print("\n| photo | size | found (score) | detect ms | 5-point error / IOD | gap, detected | gap, true 5 points "
              "|")
    rep.print("|---|---|---|---|---|---|---|")
    for r in result["alignment"]:
        rep.print(f"| {r['photo']} | {r['size']} | {'yes' if r['found'] else 'NO'} ({r['score']}) | {r['detect_ms']} | "
                  f"{r['points_err_iod']} | {r['gap_detected']} | {r['gap_true_points']} |")
    gaps = [r["gap_detected"] for r in result["alignment"] if r["found"]]
    rep.print(f"\nfound {len(gaps)} of {len(result['alignment'])}; median gap {np.median(gaps):.4f} (detected), "
              f"{np.median([r['gap_true_points'] for r in result['alignment']]):.4f} (true 5 points)")
    rep.row(**result)
    rep.finish()


if __name__ == "__main__":
    main()
