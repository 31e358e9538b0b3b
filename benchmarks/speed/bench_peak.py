"""In-register peak rates of this CPU (benchmarks/speed/peak.c): fp32 FMA on AVX2 and AVX-512 and
bf16 pair dot products (vdpbf16ps), on 1 and 2 threads. The ceiling that a bf16 speed target
has to fit under: where vdpbf16ps peaks below fp32 FMA (Intel without AMX), bf16 matrix
products cannot beat fp32 ones.

    python benchmarks/speed/bench_peak.py [--threads 2] [--json benchmarks/results/peak.json]
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import tempfile

from pacofr.runtime import cpu_name

HERE = pathlib.Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench_peak needs a C compiler (cc or gcc)")
    with tempfile.TemporaryDirectory() as tmp:
        exe = pathlib.Path(tmp) / "peak"
        subprocess.run([cc, "-O2", "-fopenmp", str(HERE / "peak.c"), "-o", str(exe)], check=True)
        result = json.loads(subprocess.run([str(exe), str(args.threads)], check=True, capture_output=True,
                                           text=True).stdout)
    result["cpu"] = cpu_name()
    print(f"# bench_peak: {result['cpu']}; in-register GFLOP/s\n")
    print("| threads | fp32 FMA AVX2 | fp32 FMA AVX-512 | bf16 vdpbf16ps | bf16 / fp32 AVX-512 |")
    print("|---|---|---|---|---|")
    for r in result["rows"]:
        ratio = r["bf16_vdpbf16ps"] / r["fp32_fma_avx512"] if r["fp32_fma_avx512"] else 0.0
        cells = [r["fp32_fma_avx2"], r["fp32_fma_avx512"], r["bf16_vdpbf16ps"]]
        print(f"| {r['threads']} | " + " | ".join(f"{c:.0f}" if c else "-" for c in cells) + f" | {ratio:.2f}x |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
