"""Long runs stay flat: resident memory after 1,000 training steps equals that after 100.

    python benchmarks/memory_flat.py [--model gpt|bert|both] [--steps 100,500,1000]

Trains a tiny GPT and a tiny BERT through the same code path as `python -m numpretrain
pretrain-gpt/-bert` (built-in corpus, AdamW, evaluation and a checkpoint every 100 steps,
metrics.jsonl) in a temporary run directory, and prints the process's current resident set
size (RSS, from /proc/self/statm) when each step count is reached. A leak, such as a graph kept
alive across steps, gradients that are never freed, or a log kept in memory, shows up as RSS
growing between the rows; allocator noise is a few hundred kB.

tests/test_reliability.py runs `measure` as a slow test (pytest -m slow).
"""

import argparse
import gc
import os
import sys
import tempfile

TINY = ["--n-documents", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--warmup-iters", "10", "--eval-interval", "100", "--eval-iters", "2",
        "--log-interval", "100"]


def resident_bytes():
    """The current resident set size; the peak (ru_maxrss) where /proc is missing (macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def measure(model="gpt", steps=(100, 500, 1000)):
    """{step: RSS in bytes} for a tiny `model` ("gpt" or "bert") trained to max(steps)."""
    from numpretrain.app import pretrain
    from numpretrain.app.cli import build_parser

    rss = {}

    def log(line):        # the trainer's progress lines are "step   100/1000 | loss ..."
        if line.startswith("step ") and "/" in line.split("|")[0]:
            step = int(line.split("/")[0].split()[1])
            if step in steps:
                gc.collect()
                rss[step] = resident_bytes()

    with tempfile.TemporaryDirectory() as run_dir:
        options = build_parser().parse_args([f"pretrain-{model}", "--out", os.path.join(run_dir, "run"), *TINY,
                                             "--max-iters", str(max(steps))])
        assert all(step % options.log_interval == 0 for step in steps), "steps must be logged steps"
        run = pretrain.pretrain_gpt if model == "gpt" else pretrain.pretrain_bert
        run(options, log=log)
    return rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("gpt", "bert", "both"), default="both")
    parser.add_argument("--steps", default="100,500,1000", help="comma-separated multiples of 100")
    args = parser.parse_args()
    steps = tuple(int(s) for s in args.steps.split(","))
    for model in ("gpt", "bert") if args.model == "both" else (args.model,):
        rss = measure(model, steps)
        first = rss[steps[0]]
        row = "  ".join(f"step {s:>5}: {rss[s] / 2**20:7.1f} MB ({(rss[s] - first) / 2**20:+.2f})" for s in steps)
        print(f"{model:4s}  {row}")


if __name__ == "__main__":
    main()
