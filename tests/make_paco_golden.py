"""Write tests/golden/paco_test_tiny.npz from PyTorch (run by hand when the reference changes):

    cd tests && python make_paco_golden.py

For each case of paco_cases.py: PyTorch's loss terms and, for every gradient of one PaCo-FR
step, its l2 norm and up to 64 entries at fixed positions (paco_cases.sample_positions): a few
tens of kB. The suite compares the C engine with these numbers, and with PyTorch itself (every
entry of every gradient) where torch is installed."""
from pathlib import Path

import numpy as np

from paco_cases import CASES, run_torch, sample_positions

HERE = Path(__file__).resolve().parent


def main():
    arrays = {}
    for case in CASES:
        terms, grads = run_torch(case)
        for k, v in terms.items():
            arrays[f"{case}/term/{k}"] = np.float64(v)
        for k, v in grads.items():
            v = np.asarray(v, np.float64).ravel()
            arrays[f"{case}/grad/{k}"] = v[sample_positions(k, v.size)].astype(np.float32)
            arrays[f"{case}/norm/{k}"] = np.float64(np.linalg.norm(v))
    np.savez_compressed(HERE / "golden" / "paco_test_tiny.npz", **arrays)


if __name__ == "__main__":
    main()
