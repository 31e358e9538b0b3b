import os

import numpy as np
import pytest

import pacofr

HAVE_DNNL = pacofr.build_info()["onednn"] is not None
# CI sets PACOFR_REQUIRE_DNNL=1: there a build without oneDNN is a failure, not a skip.
REQUIRE_DNNL = os.environ.get("PACOFR_REQUIRE_DNNL") == "1"

BACKENDS = ["dnnl", "portable"]


def pytest_sessionstart(session):
    if REQUIRE_DNNL and not HAVE_DNNL:
        raise pytest.UsageError("PACOFR_REQUIRE_DNNL=1 but pacofr was built without oneDNN")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test on each GEMM back end, restoring the previous one afterwards."""
    if request.param == "dnnl" and not HAVE_DNNL:
        pytest.skip("pacofr was built without oneDNN (apt-get install libdnnl-dev)")
    previous = pacofr.get_gemm_backend()
    pacofr.set_gemm_backend(request.param)
    yield request.param
    pacofr.set_gemm_backend(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
