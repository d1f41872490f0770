"""Properties of the compiled package itself: its kernel variants and their loader."""

import doctest
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

import skbce
from skbce import _kernels, _validation
from skbce._build_config import COMPILER, FAST_MATH, MARCH, VARIANTS

TESTS = Path(__file__).resolve().parent
SUPPORTED = _kernels.supported_variants()
# The variant an unforced import picks; the others are tested in subprocesses.
BEST = SUPPORTED[-1]


def forcing(variant):
    """The environment that makes an import load ``variant``."""
    # A single-variant build (-Dmarch=native ...) has nothing to choose from.
    return {"SKBCE_CPU": variant} if variant in _kernels.LEVELS else {}


def run_python(code, tmp_path, **env):
    """Run ``code`` in a fresh interpreter, ``env`` added to the environment.

    cwd: `python -c` puts the working directory first on sys.path, and the
    source tree's skbce/ has no compiled extension.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "SKBCE_CPU"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
    )


def test_extensions_are_compiled():
    first = next(iter(VARIANTS))
    for name in VARIANTS:
        suffix = "" if name == first else "_" + name
        for module in ("_bce", "_linear_kernels", "_csr_kernels", "_dual_kernels"):
            # find_spec does not run the module: an unsupported variant's
            # initialisation could raise SIGILL.
            origin = importlib.util.find_spec(f"skbce.{module}{suffix}").origin
            assert origin.endswith((".so", ".pyd")), origin
    assert _validation.__file__.endswith((".so", ".pyd")), _validation.__file__


@pytest.mark.skipif(
    MARCH != "dispatch" or platform.machine().lower() not in ("x86_64", "amd64"),
    reason="three variants are built only by the default (dispatch) build on x86-64",
)
def test_default_x86_build_has_three_levels():
    assert VARIANTS == {
        "baseline": "-march=x86-64-v2",
        "avx2": "-march=x86-64-v3",
        "avx512": "-march=x86-64-v4",
    }


# glibc's vector log1p, float32 and float64, per x86-64 level (the vector
# function ABI's names: b = SSE, d = AVX2, e = AVX-512, then the lanes).
VECTOR_LOG1P = {
    "baseline": (b"_ZGVbN4v_log1pf", b"_ZGVbN2v_log1p"),
    "avx2": (b"_ZGVdN8v_log1pf", b"_ZGVdN4v_log1p"),
    "avx512": (b"_ZGVeN16v_log1pf", b"_ZGVeN8v_log1p"),
}


def _glibc_has_vector_log1p():
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)


@pytest.mark.skipif(
    MARCH != "dispatch" or platform.machine().lower() not in ("x86_64", "amd64")
    or COMPILER != "gcc" or not FAST_MATH or not _glibc_has_vector_log1p(),
    reason="libmvec's vector log1p: a gcc -ffast-math dispatch build on x86-64, glibc >= 2.35",
)
@pytest.mark.parametrize("variant", [v for v in VECTOR_LOG1P if v in VARIANTS])
def test_loss_loops_call_the_vector_math_library(variant):
    # The loss loops are only fast if gcc vectorised them, calling libmvec.
    # Silent ways to lose that: a point function compiled without the
    # module's cdivision (Cython then adds a zero test, and gcc vectorised
    # no loop at all), or fast-math dropped from the compile step. (Any one
    # vectorised loop per precision satisfies this; bench_loss measures.)
    suffix = "" if variant == next(iter(VARIANTS)) else "_" + variant
    origin = importlib.util.find_spec(f"skbce._bce{suffix}").origin
    binary = Path(origin).read_bytes()
    for symbol in VECTOR_LOG1P[variant]:
        assert symbol in binary, (variant, symbol)


def test_import_picks_the_best_supported_variant(tmp_path):
    out = run_python("from skbce import _kernels; print(_kernels.variant)", tmp_path)
    assert out.stdout.strip() == BEST
    assert _kernels.bce_pass is _kernels.load_variant(_kernels.variant)["_bce"].bce_pass


def test_cpu_feature_table_is_found():
    # numpy's private table is the ground truth of the choice; if numpy moves
    # it, this fails instead of skbce silently running the baseline.
    features = _kernels.cpu_features()
    assert features is not None
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert features["SSE42"] and not _kernels.missing_features("baseline", features)


def test_missing_features_of_an_older_cpu():
    nehalem = dict.fromkeys(["SSE3", "SSSE3", "SSE41", "SSE42", "POPCNT", "CX16", "LAHF"], True)
    nehalem.update(dict.fromkeys(["AVX", "AVX2", "FMA3", "AVX512F"], False))
    assert _kernels.missing_features("baseline", nehalem) == []
    assert _kernels.missing_features("avx2", nehalem) == ["AVX", "AVX2", "FMA3"]
    assert "AVX512F" in _kernels.missing_features("avx512", nehalem)


@pytest.mark.parametrize("variant", [v for v in SUPPORTED if v in _kernels.LEVELS])
def test_skbce_cpu_forces_a_variant(variant, tmp_path):
    code = "from skbce import _kernels; print(_kernels.variant)"
    out = run_python(code, tmp_path, SKBCE_CPU=variant.upper())
    assert out.stdout.strip() == variant


def test_skbce_cpu_rejects_unknown_values(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as error:
        run_python("import skbce", tmp_path, SKBCE_CPU="sse9")
    assert "SKBCE_CPU must be one of baseline, avx2, avx512" in error.value.stderr


@pytest.mark.skipif(
    set(_kernels.LEVELS) <= set(SUPPORTED), reason="this CPU runs every level"
)
def test_skbce_cpu_above_the_cpu_warns_and_falls_back(tmp_path):
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from skbce import _kernels\n"
        "print(_kernels.variant); print(caught[0].message)\n"
    )
    out = run_python(code, tmp_path, SKBCE_CPU="avx512")
    variant, message = out.stdout.strip().splitlines()
    assert variant == SUPPORTED[-1]
    assert "SKBCE_CPU=avx512 cannot be honoured" in message


def test_show_config_example(capsys):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    for test in finder.find(_kernels.show_config, "show_config", globs={}):
        runner.run(test)
    report = capsys.readouterr().out
    assert runner.failures == 0 and runner.tries > 0, report


def test_show_config(capsys):
    skbce.show_config()
    text = capsys.readouterr().out
    assert f"kernels {_kernels.variant} " in text
    assert f"-Dmarch={MARCH}" in text
    for name in VARIANTS:
        assert name in text


@pytest.mark.parametrize("variant", SUPPORTED)
def test_denormals_survive_import(variant, tmp_path):
    # Linking a fast-math object can pull in crtfastmath.o, which would switch
    # the whole process to flush-to-zero at import. Checked in a fresh process
    # so that no other import has run first, once per variant.
    code = (
        "import numpy as np, skbce\n"
        "from skbce import _kernels\n"
        f"assert _kernels.variant == {variant!r}, _kernels.variant\n"
        "x = np.array([1e-310]) * 1.0\n"
        "assert x[0] == 1e-310, x\n"
        "assert np.float32(1e-40) * np.float32(1.0) != 0\n"
        "skbce.binary_cross_entropy([1.0, 0.0], [0.3, 0.2])\n"
        "skbce.MultiLabelLogistic(max_iter=5).fit(np.eye(4), np.eye(4, 2))\n"
        "assert np.array([1e-310])[0] * 1.0 == 1e-310\n"
    )
    run_python(code, tmp_path, **forcing(variant))


def test_denormal_probability_is_clipped_not_flushed():
    assert np.isfinite(skbce.binary_cross_entropy([1.0], [5e-324]))


def test_public_names():
    assert set(skbce.__all__) <= set(dir(skbce))
    assert isinstance(skbce.__version__, str)


def test_omp_num_threads_is_honoured(tmp_path):
    code = "from skbce._kernels import max_threads; print(max_threads())"
    out = run_python(code, tmp_path, OMP_NUM_THREADS="1")
    assert out.stdout.strip() == "1"


# What every variant computes through the public API, for the comparison
# below: losses and gradients in both precisions, and fits that run the
# solver kernels on dense and sparse X.
RESULTS_CODE = """
import sys
import numpy as np
import scipy.sparse as sp
import warnings
import skbce
from skbce import _kernels
from sklearn.exceptions import ConvergenceWarning

warnings.simplefilter("error", ConvergenceWarning)
rng = np.random.default_rng(0)
Y = (rng.random((400, 7)) < 0.3).astype(np.float64)
P = rng.uniform(1e-6, 1 - 1e-6, Y.shape)
Z = rng.normal(scale=4.0, size=Y.shape)
X = rng.normal(size=(400, 12))
X_sparse = sp.random(400, 30, density=0.2, format="csr", random_state=1)
out = {"variant": np.array(_kernels.variant)}
for dtype in (np.float64, np.float32):
    tag = np.dtype(dtype).name
    out["loss_" + tag] = skbce.binary_cross_entropy(Y.astype(dtype), P.astype(dtype))
    out["per_label_" + tag] = skbce.binary_cross_entropy(Y, P.astype(dtype), axis=0)
    out["logits_" + tag] = skbce.binary_cross_entropy(Y, Z.astype(dtype), from_logits=True)
    loss, grad = skbce.bce_loss_and_gradient(Y, Z.astype(dtype), from_logits=True)
    out["grad_" + tag] = grad
# Each solver at a tolerance it meets: L-BFGS-B asked for 1e-10 (or 1e-9) stalls in
# its line search at the objective's rounding, where the variants' rounding
# then decides the point it stops at (3e-8 apart on the sparse fit).
tolerances = {"lbfgs": 1e-8, "newton-cg": 1e-10, "dual-cd": 1e-10}
for solver, tol in tolerances.items():
    for name, data in (("dense", X), ("sparse", X_sparse)):
        model = skbce.MultiLabelLogistic(solver=solver, tol=tol, max_iter=500).fit(data, Y)
        out[f"coef_{solver}_{name}"] = model.coef_
np.savez(sys.argv[1], **out)
"""


@pytest.fixture(scope="module")
def results_per_variant(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("variants")
    (tmp_path / "results.py").write_text(RESULTS_CODE)
    results = {}
    for variant in SUPPORTED:
        path = tmp_path / f"{variant}.npz"
        env = {k: v for k, v in os.environ.items() if k != "SKBCE_CPU"}
        subprocess.run(
            [sys.executable, "results.py", str(path)],
            check=True,
            cwd=tmp_path,
            env=dict(env, **forcing(variant)),
        )
        with np.load(path) as data:
            results[variant] = dict(data)
    return results


@pytest.mark.parametrize("variant", SUPPORTED[1:])
def test_variants_agree_to_rounding(variant, results_per_variant):
    # Vector log/exp and FMA round differently from the scalar baseline; the
    # numbers must agree to what that explains, the fits to their tolerance.
    base, other = results_per_variant[SUPPORTED[0]], results_per_variant[variant]
    assert str(other.pop("variant")) == variant
    base = {k: v for k, v in base.items() if k != "variant"}
    assert other.keys() == base.keys()
    for key, value in other.items():
        if key.startswith("coef_"):
            assert_allclose(value, base[key], rtol=1e-6, atol=1e-8, err_msg=key)
        else:
            rtol = 1e-5 if key.endswith("float32") else 1e-12
            assert_allclose(value, base[key], rtol=rtol, atol=1e-15, err_msg=key)


@pytest.mark.parametrize("variant", [v for v in SUPPORTED if v != BEST])
def test_kernel_tests_pass_with_each_variant(variant, tmp_path):
    # The main run tests the variant this CPU picks; here the kernels' own
    # test modules run again with each lower variant forced.
    env = {k: v for k, v in os.environ.items() if k != "SKBCE_CPU"}
    modules = [str(TESTS / name) for name in
               ("test_linear_kernels.py", "test_metrics.py", "test_accuracy.py")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(env, SKBCE_CPU=variant),
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


QEMU = shutil.which("qemu-x86_64")
QEMU_CODE = """
import numpy as np
import skbce
from skbce import _kernels

print(_kernels.variant)
rng = np.random.default_rng(0)
Y = (rng.random((300, 5)) < 0.4).astype(float)
P = rng.uniform(0.01, 0.99, Y.shape)
want = -np.mean(Y * np.log(P) + (1 - Y) * np.log1p(-P))
assert abs(skbce.binary_cross_entropy(Y, P) - want) <= 1e-12 * want
model = skbce.MultiLabelLogistic(max_iter=50).fit(rng.normal(size=(300, 4)), Y)
assert np.isfinite(model.coef_).all()
# Every kernel loop, with and without weights: reduction="none" from logits
# once died here (a masked store at a NULL output, which qemu faults on).
Z = rng.normal(size=Y.shape)
for dtype in (np.float64, np.float32):
    for weights in ({}, {"sample_weight": np.ones(300), "label_weight": np.ones(5)}):
        for from_logits, pred in ((False, P), (True, Z)):
            for reduction in ("none", "sum", "mean"):
                options = dict(from_logits=from_logits, reduction=reduction, **weights)
                loss = skbce.binary_cross_entropy(Y, pred.astype(dtype), **options)
                grad = skbce.bce_gradient(Y, pred.astype(dtype), **options)
                both = skbce.bce_loss_and_gradient(Y, pred.astype(dtype), **options)
                assert np.isfinite(loss).all() and np.isfinite(grad).all()
                assert np.allclose(both[0], loss) and np.allclose(both[1], grad)
"""


@pytest.mark.skipif(
    QEMU is None or MARCH != "dispatch" or platform.machine().lower() != "x86_64",
    reason="needs qemu-x86_64 (Debian package qemu-user) and the x86-64 dispatch build",
)
@pytest.mark.parametrize(("cpu", "expected"), [("Nehalem", "baseline"), ("Haswell", "avx2")])
def test_runs_on_an_older_cpu_under_qemu(cpu, expected, tmp_path):
    # qemu-user runs this interpreter as an older CPU (Nehalem: x86-64-v2,
    # no AVX; Haswell: AVX2, no AVX-512) and raises SIGILL on any newer
    # instruction, as the real CPU would. The venv's own python path (not the
    # resolved symlink), so that the venv is found.
    env = {k: v for k, v in os.environ.items() if k != "SKBCE_CPU"}
    result = subprocess.run(
        [QEMU, "-cpu", cpu, sys.executable, "-c", QEMU_CODE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert result.stdout.strip() == expected
