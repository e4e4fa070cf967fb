"""Tokens/s of the installed llama.cpp build (issue 9: what the portable build costs).

Loads the tests' gemma-3-270m GGUF (from its PyPI package, nothing downloaded) with
llama-cpp-python and times prompt processing and generation, median of ``--repeats``
rounds after one discarded round. Run it once with the portable build the tests use and
once with another build on the path to compare, e.g.

    PYTHONPATH=daemon .venv/bin/python bench/bench_llama_tokens.py
    PYTHONPATH=/tmp/native-site .venv/bin/python bench/bench_llama_tokens.py

It prints the build's own CPU feature banner, so the table says which code ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "tests"), str(BENCH)]

from machine import cpu_name  # noqa: E402

from fixtures.llama import gguf_path  # noqa: E402

PROMPT = "A photo of a red bicycle leaning on a wall in an old town street, " * 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--generate", type=int, default=64, help="tokens generated per round")
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args(argv)


def one_round(llm, prompt: str, generate: int) -> tuple[float, float, int]:
    """(prompt tokens/s, generated tokens/s, prompt tokens) of one completion from a clean
    cache, as llama.cpp's own performance counters give them."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    llm.create_completion(prompt, max_tokens=generate, temperature=0.0)
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)  # the C context
    return (
        perf.n_p_eval / (perf.t_p_eval_ms / 1000),
        perf.n_eval / (perf.t_eval_ms / 1000),
        perf.n_p_eval,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        model = gguf_path(Path(tmp))
        llm = llama_cpp.Llama(str(model), n_threads=args.threads, n_ctx=1024, verbose=False, seed=1)
        one_round(llm, PROMPT, args.generate)  # warm-up, discarded
        rounds = [one_round(llm, PROMPT, args.generate) for _ in range(args.repeats)]
    banner = llama_cpp.llama_print_system_info().decode().strip()
    print(f"machine: {cpu_name()}, {args.threads} threads; llama.cpp from {llama_cpp.__file__}")
    print(f"build: {banner}")
    print(f"| gemma-3-270m Q4_K_M, median of {args.repeats} | tokens/s |")
    print("|---|---|")
    prompt_rate = statistics.median(r[0] for r in rounds)
    print(f"| prompt processing ({rounds[0][2]} tokens) | {prompt_rate:.0f} |")
    generate_rate = statistics.median(r[1] for r in rounds)
    print(f"| generation ({args.generate} tokens) | {generate_rate:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
