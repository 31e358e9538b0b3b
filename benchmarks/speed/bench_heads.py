"""The downstream heads' losses, forward + backward, against PyTorch in the same run: soft-argmax
landmarks (heatmaps over every pixel) and per-pixel cross-entropy (parsing), at the sizes the
protocol's probes train with (pacofr_vit_tiny_p8_112, batch 16). These run once per head step,
thousands of times per scored encoder. PyTorch gets its natural layout, (B, L, S*S) and
(B, K, S, S), so no unpatchify is charged to it; pacofr reads the per-patch layout its linear
head writes. Median of --rounds, --threads (2) threads each.

    python benchmarks/speed/bench_heads.py                 # both heads, spreads 1 and 40, 7 rounds
    python benchmarks/speed/bench_heads.py --rounds 15 --save
    python benchmarks/speed/bench_heads.py --quick --json out.json   # spread 1 only, 2 rounds

Before timing, each case's pacofr forward is checked against its float64 NumPy twin
(pacofr.ref.heads) and its forward and gradient against PyTorch autograd (the gradient brought
to the per-patch layout); then pacofr and PyTorch alternate call by call (Report.alternate).
"""
import numpy as np

from pacofr import _C
from pacofr.ref import heads as ref
from pacofr.testing import bench

B, G, P, L, K = 16, 14, 8, 68, 11
S = G * P


def pacofr_softargmax(z, dxy):
    def run():
        xy, lse = _C.softargmax_forward(z, P)
        dz = np.zeros_like(z)
        _C.softargmax_backward(dxy, z, lse, xy, P, dz)
        return xy, dz
    return run


def torch_softargmax(torch, z, dxy):
    maps = torch.tensor(np.ascontiguousarray(ref.unpatchify_maps(z, P).reshape(B, L, S * S)),
                        requires_grad=True)                                                 # its own layout
    ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)                                 # (S*S, 2)
    g = torch.tensor(dxy)

    def run():
        maps.grad = None
        coords = torch.softmax(maps, -1) @ grid
        coords.backward(g)
        return coords, maps.grad
    return run


def pacofr_ce(z, labels):
    def run():
        loss, count = _C.pixel_ce_forward(z, labels, P, -1)
        dz = np.zeros_like(z)
        _C.pixel_ce_backward(z, labels, P, -1, 1.0, dz)
        return loss, count, dz
    return run


def torch_ce(torch, z, labels):
    logits = torch.tensor(np.ascontiguousarray(ref.unpatchify_maps(z, P)), requires_grad=True)  # (B, K, S, S)
    y = torch.tensor(labels)

    def run():
        logits.grad = None
        loss = torch.nn.functional.cross_entropy(logits, y, ignore_index=-1)
        loss.backward()
        return loss, logits.grad
    return run


def check(rep, name, kind, z, labels, ours, theirs):
    """pacofr's forward against float64 NumPy, its forward and gradient against PyTorch."""
    def grad_close(tag, got, want_maps):
        want = ref.patchify_maps(want_maps.detach().numpy().reshape(-1, got.shape[-1] // (P * P), S, S), P)
        rep.check(f"{name}: {tag} gradient vs PyTorch", got, want, rtol=0.0,
                  atol=1e-3 * float(np.abs(want).max()) + 1e-12)
    if kind == "softargmax":
        (xy, dz), (coords, grad) = ours(), theirs()
        rep.check(f"{name}: coordinates vs float64", xy, ref.softargmax(z, P), rtol=0.0, atol=2e-3)
        rep.check(f"{name}: coordinates vs PyTorch", xy, coords.detach().numpy(), rtol=0.0, atol=2e-3)
        grad_close("logit", dz, grad)
    else:
        (loss, count, dz), (tloss, grad) = ours(), theirs()
        want, n = ref.pixel_cross_entropy(z, labels, P, -1)
        rep.require(f"{name}: labelled pixel count", count == n == B * S * S, f"{count} of {B * S * S}")
        rep.check(f"{name}: loss vs float64", loss, want, rtol=1e-5)
        rep.check(f"{name}: loss vs PyTorch", loss, tloss.item(), rtol=1e-5)
        grad_close("logit", dz, grad)


def cases(torch, spreads):
    """{case name: (kind, z, labels, pacofr fn, torch fn)}: a fresh head (spread 1) and a trained
    one's peaked heatmaps (spread 40)."""
    rng, out = np.random.default_rng(0), {}
    for spread in spreads:
        z = (rng.standard_normal((B, G * G, P * P * L)) * spread).astype(np.float32)
        dxy = (rng.standard_normal((B, L, 2)) * 1e-4).astype(np.float32)
        out[f"soft-argmax, spread {spread:g}"] = ("softargmax", z, None, pacofr_softargmax(z, dxy),
                                                  torch_softargmax(torch, z, dxy))
        zc = (rng.standard_normal((B, G * G, P * P * K)) * spread).astype(np.float32)
        labels = rng.integers(0, K, (B, S, S)).astype(np.int64)
        out[f"pixel cross-entropy, spread {spread:g}"] = ("ce", zc, labels, pacofr_ce(zc, labels),
                                                          torch_ce(torch, zc, labels))
    return out


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    spreads = (1.0,) if args.quick else (1.0, 40.0)
    rounds = 2 if args.quick else args.rounds
    import torch
    torch.set_num_threads(args.threads)
    rep = bench.Report("bench_heads", args, note=f"PyTorch {torch.__version__}, B={B}, {S}x{S}, L={L}, K={K}, "
                                                 f"median of {rounds}\n")
    todo = cases(torch, spreads)
    for name, (kind, z, labels, ours, theirs) in todo.items():
        check(rep, name, kind, z, labels, ours, theirs)
    cells = []
    for name, (_, _, _, ours, theirs) in todo.items():
        t = rep.alternate({"pacofr": ours, "torch": theirs}, rounds, warmup=1, reps=1)
        a, b = bench.median(t["pacofr"]), bench.median(t["torch"])
        rep.row(case=name, pacofr_ms=1e3 * a, torch_ms=1e3 * b, torch_over_pacofr=b / a, seconds=t)
        cells.append([name, f"{1e3 * a:.1f}", f"{1e3 * b:.1f}", f"{b / a:.2f}"])
    rep.table(["forward + backward", "pacofr ms", "PyTorch ms", "PyTorch / pacofr"], cells)
    rep.finish()


if __name__ == "__main__":
    main()
