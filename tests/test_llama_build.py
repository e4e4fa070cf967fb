"""The llama.cpp build the tests use runs on every x86-64 machine of this project's kind.

pip's default build of llama-cpp-python targets the build host's own CPU (GGML_NATIVE):
built on an Intel host with AMX it crashed on its first request, and an AVX-512 build
dies on a CPU without AVX-512. .ci/llama-wheel builds it for the x86-64-v3 baseline;
these tests prove the installed library holds nothing above it, and that the check
itself catches AVX-512, AVX-VNNI and AMX code.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from fixtures.isa import above_baseline

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the baseline check reads x86-64 code"
)

AVX512_C = """
#include <immintrin.h>
void add(float *a, const float *b, int n) {
  for (int i = 0; i + 16 <= n; i += 16)
    _mm512_storeu_ps(a + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
}
"""
AVX512VL_C = """
#include <immintrin.h>
__m256i tern(__m256i a, __m256i b, __m256i c) { return _mm256_ternarylogic_epi32(a, b, c, 0x96); }
"""
VNNI_C = """
#include <immintrin.h>
__m256i dot(__m256i acc, __m256i a, __m256i b) { return _mm256_dpbusd_avx_epi32(acc, a, b); }
"""
AMX_C = """
#include <immintrin.h>
void zero(void) { _tile_zero(0); _tile_release(); }
"""
PLAIN_C = """
void add(float *a, const float *b, int n) { for (int i = 0; i < n; i++) a[i] += b[i]; }
"""


def llama_libraries() -> list[Path]:
    import llama_cpp

    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("*.so*"))
    assert any("ggml-cpu" in lib.name for lib in libs), libs
    return libs


def compile_shared(tmp_path: Path, source: str, *flags: str) -> Path:
    src = tmp_path / "code.c"
    src.write_text(source)
    out = tmp_path / f"lib{len(list(tmp_path.iterdir()))}.so"
    subprocess.run(["gcc", "-O3", "-shared", "-fPIC", *flags, str(src), "-o", str(out)], check=True)
    return out


def test_installed_llama_cpp_stays_within_x86_64_v3() -> None:
    for lib in llama_libraries():
        found = above_baseline(lib)
        assert not found, (
            f"{lib.name} uses instructions some of this project's CPUs lack "
            f"(rebuild with .ci/llama-wheel): {found}"
        )


@pytest.mark.parametrize(
    ("source", "flags"),
    [
        (AVX512_C, ("-mavx512f",)),
        (AVX512VL_C, ("-mavx512f", "-mavx512vl")),
        (VNNI_C, ("-mavx2", "-mavxvnni")),
        (AMX_C, ("-mamx-tile",)),
    ],
    ids=["avx512f", "avx512vl-on-ymm", "avx-vnni", "amx"],
)
def test_check_catches_code_above_the_baseline(tmp_path: Path, source: str, flags) -> None:
    assert above_baseline(compile_shared(tmp_path, source, *flags))


def test_check_passes_baseline_code(tmp_path: Path) -> None:
    assert above_baseline(compile_shared(tmp_path, PLAIN_C, "-march=x86-64-v3")) == []
