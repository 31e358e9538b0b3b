"""A picture of SynthFace's ground truth: images with their 68 landmarks (visible green,
hidden red) above their LaPa-11 parsing maps blended over the image (needs matplotlib)."""
import numpy as np

# LaPa-11 colours: background, skin, brows, eyes, nose, lips, inner mouth, hair
PALETTE = np.array([[0, 0, 0], [230, 180, 140], [120, 60, 20], [160, 90, 30], [40, 120, 255], [0, 200, 255],
                    [255, 220, 0], [255, 60, 90], [120, 0, 60], [200, 0, 120], [90, 50, 160]], np.uint8)


def colour_parsing(parsing, image=None, alpha=0.6):
    """(…, S, S) LaPa-11 labels -> (…, S, S, 3) uint8 colours, blended over ``image`` if given."""
    rgb = PALETTE[np.asarray(parsing)]
    if image is None:
        return rgb
    return (alpha * rgb + (1 - alpha) * np.asarray(image, np.float32)).astype(np.uint8)


def save_grid(batch, path, columns=8, dpi=110):
    """Write a PNG: for each row of ``columns`` images, the faces with landmarks, then their
    parsing overlays. ``batch``: SynthFace.render_batch output."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(batch["image"])
    rows = -(-n // columns)
    fig, axes = plt.subplots(2 * rows, columns, figsize=(1.4 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        r, c = divmod(k, columns)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        top.imshow(batch["image"][k])
        lm, vis = batch["landmarks"][k], batch["visible"][k]
        top.scatter(lm[vis, 0], lm[vis, 1], s=1.5, c="lime", linewidths=0)
        top.scatter(lm[~vis, 0], lm[~vis, 1], s=1.5, c="red", linewidths=0)
        a = batch["attributes"][k]
        top.set_title(f"yaw {a['yaw']:.0f}", fontsize=6, pad=1)
        bottom.imshow(colour_parsing(batch["parsing"][k], batch["image"][k]))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.98, bottom=0.01, wspace=0.04, hspace=0.12)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
