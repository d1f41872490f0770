"""The compiled kernels this CPU runs best: the one place skbce imports them from.

A default build on x86-64 compiles the hot kernel modules (``_bce``,
``_linear_kernels``, ``_csr_kernels``, ``_dual_kernels``) from the same source three times: for x86-64-v2
(``skbce._bce``, the baseline every x86-64 CPU since about 2009 runs), for
x86-64-v3 with AVX2 and FMA (``skbce._bce_avx2``) and for x86-64-v4 with
AVX-512 (``skbce._bce_avx512``). gcc vectorises the loss loops' ``log`` and
``exp`` only with these instruction sets, so one portable wheel keeps the
speed of a ``-march=native`` build. Importing a variant the CPU lacks could
die with an illegal instruction (even its module initialisation is compiled
for its level), so this module asks numpy's run-time CPU detection, which
includes the operating system's support for the AVX / AVX-512 registers,
before importing anything.

``SKBCE_CPU=baseline|avx2|avx512`` caps the choice, so every variant can be
tested on one machine. Package code imports kernels from here
(``from skbce._kernels import bce_pass``); the names resolve in the chosen
variant's modules.
"""

import importlib
import os
import warnings

from skbce._build_config import MARCH, VARIANTS

__all__ = ["cpu_features", "load_variant", "show_config", "supported_variants", "variant"]

# The x86-64 dispatch levels, lowest first, and numpy's names of the CPU
# features that each level's -march lets gcc emit (the psABI's x86-64-v2,
# -v3, -v4 lists; a level includes those below it).
LEVELS = ("baseline", "avx2", "avx512")
_LEVEL_FEATURES = {
    "baseline": ("SSE3", "SSSE3", "SSE41", "SSE42", "POPCNT", "CX16", "LAHF"),
    "avx2": ("AVX", "AVX2", "FMA3", "F16C", "BMI", "BMI2", "LZCNT", "MOVBE"),
    "avx512": ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"),
}
_KERNEL_MODULES = ("_bce", "_linear_kernels", "_csr_kernels", "_dual_kernels")


def cpu_features():
    """numpy's run-time CPU features, ``{name: bool}``, or None if unknown.

    The table moved from ``numpy.core`` (numpy 1.x) to ``numpy._core`` (2.x).
    """
    for path in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return dict(importlib.import_module(path).__cpu_features__)
        except (ImportError, AttributeError):
            continue
    return None


def missing_features(name, features=None):
    """The CPU features variant ``name`` needs that this CPU lacks.

    A feature an older numpy does not report (1.24 has no MOVBE, LAHF ...) is
    not held against a level; the level's defining features (SSE4.2, AVX2,
    AVX512F) are reported by every numpy skbce supports.
    """
    if name not in LEVELS:
        return []  # a single-variant build: -march=native or compiler default
    if features is None:
        features = cpu_features()
    needed = [f for level in LEVELS[: LEVELS.index(name) + 1] for f in _LEVEL_FEATURES[level]]
    if features is None:
        # numpy's detection not found: trust only the baseline.
        return [] if name == "baseline" else ["(unknown: numpy does not report CPU features)"]
    return [f for f in needed if features.get(f, True) is False]


def supported_variants():
    """The variants of this build that this CPU runs, lowest first."""
    features = cpu_features()
    return [name for name in VARIANTS if not missing_features(name, features)]


def _requested_variant():
    """The ``SKBCE_CPU`` environment variable, validated; None when unset."""
    requested = os.environ.get("SKBCE_CPU", "").strip().lower()
    if requested in ("", "auto"):
        return None
    if requested not in LEVELS:
        raise ValueError(
            f"SKBCE_CPU must be one of {', '.join(LEVELS)} (or unset); got {requested!r}"
        )
    return requested


def _choose_variant():
    supported = supported_variants()
    if not supported:
        name = next(iter(VARIANTS))
        raise ImportError(
            f"skbce's kernels need an x86-64-v2 CPU; this one lacks "
            f"{', '.join(missing_features(name))}. Build from source for this "
            f"machine: pip install . -Csetup-args=-Dmarch=native"
        )
    requested = _requested_variant()
    if requested is None:
        return supported[-1]
    if requested in supported:
        return requested
    if requested not in VARIANTS:
        reason = f"this build has only {', '.join(VARIANTS)} (built with -Dmarch={MARCH})"
    else:
        reason = f"this CPU lacks {', '.join(missing_features(requested))}"
    below = [name for name in supported if name in LEVELS and LEVELS.index(name) < LEVELS.index(requested)]
    chosen = below[-1] if below else supported[0]
    warnings.warn(
        f"SKBCE_CPU={requested} cannot be honoured: {reason}; using the {chosen} kernels",
        RuntimeWarning,
        stacklevel=3,
    )
    return chosen


def load_variant(name):
    """The kernel modules of one variant, ``{"_bce": module, ...}``.

    Only for a variant in :func:`supported_variants`: another may crash the
    process with an illegal instruction.
    """
    if name not in VARIANTS:
        raise ValueError(f"name must be one of {', '.join(VARIANTS)}; got {name!r}")
    suffix = "" if name == next(iter(VARIANTS)) else "_" + name
    return {
        module: importlib.import_module(f"skbce.{module}{suffix}") for module in _KERNEL_MODULES
    }


variant = _choose_variant()
_modules = load_variant(variant)


def __getattr__(name):
    # PEP 562: `from skbce._kernels import bce_pass` finds the chosen
    # variant's function, so kernels added to a .pyx need no edit here.
    for module in _modules.values():
        if not name.startswith("_") and hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    names = set(globals())
    for module in _modules.values():
        names.update(n for n in dir(module) if not n.startswith("_"))
    return sorted(names)


def show_config():
    """Print which compiled kernels skbce runs on this machine and why.

    The variant loaded, the variants this build has with their instruction-set
    flags, those this CPU supports, and the ``SKBCE_CPU`` override if set.

    Examples
    --------
    On an AVX-512 machine, with the default build::

        skbce 0.1.0: kernels avx512 (skbce._bce_avx512, skbce._linear_kernels_avx512, skbce._csr_kernels_avx512, skbce._dual_kernels_avx512)
        built with -Dmarch=dispatch: baseline (-march=x86-64-v2), avx2 (-march=x86-64-v3), avx512 (-march=x86-64-v4)
        this CPU runs: baseline, avx2, avx512
        SKBCE_CPU: not set

    >>> import skbce
    >>> skbce.show_config()  # doctest: +ELLIPSIS
    skbce ...: kernels ... (skbce._bce..., skbce._linear_kernels..., skbce._csr_kernels..., skbce._dual_kernels...)
    built with -Dmarch=...
    this CPU runs: ...
    SKBCE_CPU: ...
    """
    from skbce import __version__

    loaded = ", ".join(module.__name__ for module in _modules.values())
    built = ", ".join(f"{name} ({flags or 'compiler default'})" for name, flags in VARIANTS.items())
    print(f"skbce {__version__}: kernels {variant} ({loaded})")
    print(f"built with -Dmarch={MARCH}: {built}")
    print(f"this CPU runs: {', '.join(supported_variants())}")
    print(f"SKBCE_CPU: {os.environ.get('SKBCE_CPU') or 'not set'}")
