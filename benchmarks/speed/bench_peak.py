"""In-register peak rates of this CPU (benchmarks/speed/peak.c): fp32 FMA on AVX2 and AVX-512 and
bf16 pair dot products (vdpbf16ps), on 1 .. --threads threads. The ceiling that a bf16 speed target
has to fit under: where vdpbf16ps peaks below fp32 FMA (Intel without AMX), bf16 matrix
products cannot beat fp32 ones.

    python benchmarks/speed/bench_peak.py                 # 1 and 2 threads, 5e7 rounds per kernel
    python benchmarks/speed/bench_peak.py --threads 4 --save
    python benchmarks/speed/bench_peak.py --quick --json out.json   # 5e6 rounds: a second

The timing loop is in C (a parallel region around each kernel, after a warm-up), so nothing
goes through Report.alternate; the header, the checks, the rows and the files go through the
Report. Before its rates count, each kernel's sum after a short run on every thread count must
be exactly half the flops its rate charges it with (every operand is 1.0): a kernel that skips
work, or a flop count that does not match the instructions, fails.
"""
import json
import pathlib
import shutil
import subprocess
import tempfile

from pacofr.testing import bench

HERE = pathlib.Path(__file__).resolve().parent
KERNELS = ["fp32_fma_avx2", "fp32_fma_avx512", "bf16_vdpbf16ps"]


def run_peak(threads, rounds):
    """Build peak.c and run it -> its JSON ({"checks": [...], "rows": [...]})."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench_peak needs a C compiler (cc or gcc)")
    with tempfile.TemporaryDirectory() as tmp:
        exe = pathlib.Path(tmp) / "peak"
        subprocess.run([cc, "-O2", "-fopenmp", str(HERE / "peak.c"), "-o", str(exe)], check=True)
        out = subprocess.run([str(exe), str(threads), str(rounds)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--rounds", type=int, default=50_000_000, help="kernel rounds per timed run")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 5_000_000
    rep = bench.Report("bench_peak", args, dtype="fp32-bf16",
                       note=f"in-register GFLOP/s, {args.rounds:g} rounds per kernel and thread count\n")
    result = run_peak(args.threads, args.rounds)
    for c in result["checks"]:
        rep.check(f"{c['kernel']} sum, {c['threads']} thread(s), {c['rounds']} rounds", c["sum"], c["flops"] / 2,
                  rtol=0.0, atol=0.5)  # integers: exact
    ran = {c["kernel"] for c in result["checks"]}
    rep.require("a check for every kernel that ran", all(k in ran or not r[k] for r in result["rows"] for k in KERNELS),
                f"checked {sorted(ran)}")
    cells = []
    for r in result["rows"]:
        ratio = r["bf16_vdpbf16ps"] / r["fp32_fma_avx512"] if r["fp32_fma_avx512"] else 0.0
        cells.append([r["threads"], *(f"{r[k]:.0f}" if r[k] else "-" for k in KERNELS), f"{ratio:.2f}x"])
        rep.row(**r)
    rep.table(["threads", "fp32 FMA AVX2", "fp32 FMA AVX-512", "bf16 vdpbf16ps", "bf16 / fp32 AVX-512"], cells)
    rep.finish()


if __name__ == "__main__":
    main()
