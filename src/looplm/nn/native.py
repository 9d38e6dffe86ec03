"""The recurrences' time loops compiled from C++ (``csrc/recurrence.cpp``), built on first use.

Nothing is compiled at import. The first fast-path call builds the extension with
``torch.utils.cpp_extension.load`` (g++ and ninja, 25-35 s once) into torch's extension cache
(``~/.cache/torch_extensions``, or ``$TORCH_EXTENSIONS_DIR``); later processes load the built
library in well under a second. torch's build holds a file lock, so processes that start at
once (pytest-xdist workers, DDP ranks) build it once and the others wait and load it.

The library is built for this CPU's vector unit (AVX512, AVX2, or plain), named after it, so
a cache shared by machines of different kinds keeps one build per kind.

``LOOPLM_NO_EXT=1`` skips it: the Python fast path in :mod:`looplm.nn.fast` runs instead, with
the same numbers. So does a machine where the build fails (no compiler, no ninja): one line on
stderr says what is missing, then training goes on at the Python path's speed.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).parent / "csrc" / "recurrence.cpp"
DISABLE = "LOOPLM_NO_EXT"
# ATen's own flags for each vector unit (its vec headers pick their code from CPU_CAPABILITY_*)
CAPABILITY_FLAGS = {
    "AVX512": ["-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512", "-mavx512f", "-mavx512bw",
               "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2", "-mavx2", "-mfma", "-mf16c"],
}


def _missing_tool() -> str | None:
    """What the build needs and this machine lacks, said with how to get it; None when all there."""
    from torch.utils.cpp_extension import is_ninja_available

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler!r} not found: install g++, e.g. apt install g++)"
    if not is_ninja_available():
        return "no ninja build tool (pip install ninja, or apt install ninja-build)"
    return None


@functools.cache
def extension() -> ModuleType | None:
    """The compiled module (built or loaded once per process), or None: use the Python path."""
    if os.environ.get(DISABLE, "") not in ("", "0"):
        return None
    missing = _missing_tool()
    if missing is None:
        try:
            return _build()
        except Exception as err:  # a failed build is reported, never fatal: Python path runs
            lines = str(err).strip().splitlines() or [type(err).__name__]
            missing = f"the build failed ({lines[-1][:200]})"
    print(f"looplm: C++ recurrences unavailable, {missing}; running the slower Python fast path "
          f"(set {DISABLE}=1 to choose it quietly)", file=sys.stderr)
    return None


def _build() -> ModuleType:
    from torch.utils.cpp_extension import load

    capability = torch.backends.cpu.get_cpu_capability()
    flags = CAPABILITY_FLAGS.get(capability, [])
    name = f"looplm_recurrence_{capability.lower() if flags else 'default'}"
    return load(name=name, sources=[str(SOURCE)], extra_cflags=["-O3", *flags], verbose=False)
