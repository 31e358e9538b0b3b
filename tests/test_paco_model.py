"""One whole PaCo-FR step in C (masks given) against PyTorch autograd (pacofr/testing/torch_paco.py):
every loss term and every parameter gradient, for soft and hard tokens, token and region
consistency, inside and after incubation; and against the stored golden numbers."""
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close
from paco_cases import CASES, TERMS, run_c, run_torch, sample_positions

GOLDEN = Path(__file__).resolve().parent / "golden" / "paco_test_tiny.npz"


def compare(c_terms, c_grads, want_terms, want_grads):
    for k in TERMS:
        assert abs(c_terms[k] - want_terms[k]) <= 2e-5 * max(1.0, abs(want_terms[k])), (k, c_terms[k], want_terms[k])
    assert set(c_grads) == set(want_grads), sorted(set(c_grads) ^ set(want_grads))
    for name, g in want_grads.items():
        assert_close(c_grads[name], g, rtol=2e-4, atol=1e-7, what=name)


@pytest.mark.parametrize("case", list(CASES))
def test_step_matches_pytorch(case, torch):
    c_terms, c_grads = run_c(case)
    t_terms, t_grads = run_torch(case)
    compare(c_terms, c_grads, t_terms, t_grads)
    if case.startswith("incubation"):
        assert not c_grads["codebook.weight"].any() and c_terms["inc"] > 0
    else:
        assert np.abs(c_grads["codebook.weight"]).max() > 0
    assert np.abs(c_grads["belief.fc1.weight"]).max() > 0


@pytest.mark.parametrize("case", list(CASES))
def test_step_matches_golden(case):
    """Against PyTorch's stored numbers: every term, every gradient's norm and 64 entries."""
    g = np.load(GOLDEN)
    terms = {k: float(g[f"{case}/term/{k}"]) for k in TERMS}
    c_terms, c_grads = run_c(case)
    names = {k.split("/", 2)[2] for k in g.files if k.startswith(f"{case}/grad/")}
    assert names == set(c_grads), sorted(names ^ set(c_grads))
    for k in TERMS:
        assert abs(c_terms[k] - terms[k]) <= 2e-5 * max(1.0, abs(terms[k])), (k, c_terms[k], terms[k])
    for name in names:
        got = np.asarray(c_grads[name], np.float64).ravel()
        norm = float(g[f"{case}/norm/{name}"])
        assert abs(np.linalg.norm(got) - norm) <= 2e-4 * norm + 1e-7, name
        assert_close(got[sample_positions(name, got.size)], g[f"{case}/grad/{name}"], rtol=2e-4, atol=1e-7, what=name)
