"""Properties of the compiled package itself."""

import os
import subprocess
import sys

import numpy as np

import skbce
from skbce import _bce, _validation


def test_extensions_are_compiled():
    for module in (_bce, _validation):
        assert module.__file__.endswith((".so", ".pyd")), module.__file__


def test_denormals_survive_import(tmp_path):
    # Linking a fast-math object can pull in crtfastmath.o, which would switch
    # the whole process to flush-to-zero at import. Checked in a fresh process
    # so that no other import has run first.
    code = (
        "import numpy as np, skbce\n"
        "x = np.array([1e-310]) * 1.0\n"
        "assert x[0] == 1e-310, x\n"
        "assert np.float32(1e-40) * np.float32(1.0) != 0\n"
        "skbce.binary_cross_entropy([1.0, 0.0], [0.3, 0.2])\n"
        "assert np.array([1e-310])[0] * 1.0 == 1e-310\n"
    )
    # cwd: `python -c` puts the working directory first on sys.path, and the
    # source tree's skbce/ has no compiled extension.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_denormal_probability_is_clipped_not_flushed():
    assert np.isfinite(skbce.binary_cross_entropy([1.0], [5e-324]))


def test_public_names():
    assert set(skbce.__all__) <= set(dir(skbce))
    assert isinstance(skbce.__version__, str)


def test_omp_num_threads_is_honoured(tmp_path):
    code = "from skbce._bce import max_threads; print(max_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.stdout.strip() == "1"
