"""BERT's pretraining recipes, one factor at a time: why the textbook recipe did not transfer, and what does.

    python demos/bert_recipes.py                          # every row x 3 pretraining seeds: about 4 hours on 2 cores
    python demos/bert_recipes.py --rows textbook,default --seeds 0     # a part of it
    python demos/bert_recipes.py --rows default --count-lessons       # the lessons alone, no model: seconds
    python demos/bert_recipes.py --city-link --seeds 0                # NSP and the city link: about 12 minutes

The textbook recipe is BERT's objective as the paper states it (15% of the characters
chosen, 80% [MASK] / 10% random / 10% kept, next sentence prediction on pairs that are half
true) trained the way this project first trained it: lr 1e-3, 1,500 steps, half of the
documents reviews. It transferred poorly. The transfer recipe changed five things at once
(30% masking, no NSP, reviews only, lr 2e-3, 2,000 steps). Each row here changes ONE of them
from the textbook recipe, so the table says which one mattered. Then come the transfer
recipe; the former default, the textbook objective at lr 2e-3 for 3,000 steps; that recipe
trained for 4,000 steps, with whole-word masking (`--words builtin`), and as 6,000 steps of 16
sequences instead of 3,000 of 32 (the same characters); and this project's default
(`pretrain-bert`, demos/pretrain_bert.py): the former default with three reviews in four
documents instead of one in two; last, that default with ERNIE's entity masking (`--words
entities`: the names of the corpus's world hidden whole, every other character one by one).

For every pretrained BERT (runs/bert_recipes/<row>_seed<N>, reused when finished):
  MLM loss    its last validation MLM loss (nats per chosen character)
  gate        the label-free adjective-embedding gate of demos/finetune_classifier.py
  16 / 64     held-out-adjective test accuracy after fine-tuning on 16 / 64 labelled reviews
              (mean pooling, lr 3e-4, 60 steps, as the fine-tuning demo; 3 data seeds)
  cloze       the MLM head asked "{review}非常[MASK][MASK]。", 失望 or 满意? (finetune --pooling cloze):
              with no label (zero-shot) and fine-tuned on 16 labels (3 data seeds)
  fill-mask   how many of the corpus's 10 fill-mask probes it fills with an expected answer
and, per row, counted on its batches without a model (polarity_lessons):
  lessons     adjectives masked whole beside a visible word of the same polarity, in the whole run:
              the predictions that only the review's polarity helps (clashes: of the other polarity)
and, with --count-lessons only, city lessons (city_lessons): a university's name masked whole beside
its visible city, what the fill-mask probes' 「我在上海旅行，昨天去了[MASK][MASK]大学参观」 needs.
--city-link gives that link its best case instead of the table: a corpus of nothing but trips, each
naming its university once, the names hidden whole, the default recipe otherwise, with and without
NSP; it prints each run's city lessons and what it fills the four trip probes with.
Each cell is the mean [min-max] over the pretraining seeds (a seed's value: the mean over its
data seeds). Pretraining runs go to --jobs processes of one thread each.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

# One BLAS thread per process: --jobs processes use the cores better than one process's threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpretrain  # noqa: E402, F401, I001  (before NumPy, so its threads get every core: numpretrain/speed/threads.py)
import numpy as np  # noqa: E402

from numpretrain.app import cli, probing  # noqa: E402
from numpretrain.app.pretrain import load_corpus, pretraining_batcher, tokenizer_for_run  # noqa: E402
from numpretrain.data import IGNORE_INDEX, NEGATIVE_CLOSINGS, POSITIVE_CLOSINGS, SENTIMENT_WORDS  # noqa: E402
from numpretrain.data.builtin.corpus import city_trip, corpus_text  # noqa: E402
from numpretrain.data.builtin.probes import fill_mask_probes  # noqa: E402
from numpretrain.data.builtin.world import CITIES  # noqa: E402
from numpretrain.storage.runs import load_pretrained  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finetune_classifier import (  # noqa: E402  (the fine-tuning demo's measurements, reused)
    BERT_TRANSFER_RECIPE, CLOZE, COMMON, cloze_zero_shot, embedding_gate, finetune_accuracy, finished,
    input_embeddings, last_val_loss)
from pretrain_bert import FULL as DEFAULT_RECIPE, show_fill_mask  # noqa: E402

# The textbook recipe as the BERT demo ran it before (demos/pretrain_bert.py's FULL then).
TEXTBOOK = ["--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "32",
            "--max-iters", "1500", "--lr", "1e-3", "--min-lr", "1e-4", "--warmup-iters", "100",
            "--eval-interval", "250", "--log-interval", "50", "--n-documents", "40000", "--dropout", "0.1",
            "--review-share", "0.5"]
# The default before its corpus mix changed: the textbook objective at lr 2e-3 for 3,000 steps.
FORMER_DEFAULT = [*DEFAULT_RECIPE, "--review-share", "0.5"]
# row name -> the pretrain-bert options (later options win over earlier ones, as argparse reads them)
ROWS = {
    "textbook": TEXTBOOK,
    "masking 30%": [*TEXTBOOK, "--mask-prob", "0.3", "--max-predictions", "32"],
    "no NSP": [*TEXTBOOK, "--no-nsp"],
    "reviews only": [*TEXTBOOK, "--review-share", "1.0"],
    "lr 2e-3": [*TEXTBOOK, "--lr", "2e-3", "--min-lr", "2e-4"],
    "2000 steps": [*TEXTBOOK, "--max-iters", "2000"],
    "transfer recipe": BERT_TRANSFER_RECIPE,
    "former default": FORMER_DEFAULT,
    "former default 4000 steps": [*FORMER_DEFAULT, "--max-iters", "4000"],
    "former default whole words": [*FORMER_DEFAULT, "--words", "builtin"],
    "former default batch 16 6000 steps": [*FORMER_DEFAULT, "--batch-size", "16", "--max-iters", "6000",
                                           "--eval-interval", "500"],
    "default": DEFAULT_RECIPE,
    "default with entity masking": [*DEFAULT_RECIPE, "--words", "entities"],
}
# The city link's best case (--city-link): a corpus of nothing but trips, each naming its university once,
# with the names hidden whole (ERNIE's entity masking), with and without NSP.
TRIPS_CORPUS = os.path.join("runs", "bert_recipes", "trips_corpus.txt")
TRIPS_ONLY = [*DEFAULT_RECIPE, "--corpus", TRIPS_CORPUS, "--words", "entities"]
CITY_ROWS = {"trips only": TRIPS_ONLY, "trips only without NSP": [*TRIPS_ONLY, "--no-nsp"]}
MEAN_POOLING = [*COMMON, "--max-iters", "60", "--lr", "3e-4", "--min-lr", "3e-5", "--pooling", "mean"]   # as the
CLOZE_16 = [*COMMON, *CLOZE]                                                       # fine-tuning demo's rows
DATA_SEEDS = (0, 1, 2)


def recipe(row):
    """The pretrain-bert options of a row of the table or of the city link."""
    return ROWS[row] if row in ROWS else CITY_ROWS[row]


def run_dir(row, seed):
    return os.path.join("runs", "bert_recipes", f"{row.replace(' ', '_').replace(',', '').replace('%', 'pct')}_seed{seed}")


def pretrain(job):
    """Pretrain one (row, seed) BERT unless it is there, its progress lines in its train.log."""
    row, seed = job
    out = run_dir(row, seed)
    if finished(out):
        return job, 0.0
    os.makedirs(out, exist_ok=True)
    resume = ["--resume"] if os.path.exists(os.path.join(out, "config.json")) else []
    started = time.time()
    with open(os.path.join(out, "train.log"), "a", encoding="utf-8", buffering=1) as log, contextlib.redirect_stdout(log):
        status = cli.main(["pretrain-bert", "--out", out, *recipe(row), "--seed", str(seed), *resume])
    if status:
        raise RuntimeError(f"pretrain-bert for {out} failed (status {status}); see {out}/train.log")
    return job, time.time() - started


def fill_mask_score(model, tokenizer):
    """How many fill-mask probes the model fills with an expected answer (a reviews-only model lacks
    most of their characters, and scores 0 without a warning for each)."""
    fill = lambda prompt: probing.fill_mask(model, tokenizer, prompt, top_k=1, warn=lambda message: None)[1]
    return sum(any(probe.filled(answer) == fill(probe.prompt) for answer in probe.expected)
               for probe in fill_mask_probes())


def evaluate(job):
    """Every column of the table for one pretrained BERT."""
    row, seed = job
    ckpt = run_dir(row, seed)
    model, tokenizer, _ = load_pretrained(ckpt, expect="bert")
    with open(os.path.join(ckpt, "metrics.jsonl"), encoding="utf-8") as f:
        last = [r for r in map(json.loads, filter(str.strip, f)) if "val_loss" in r][-1]
    test = lambda n, options: float(np.mean([finetune_accuracy(ckpt, n, s, options)[0] for s in DATA_SEEDS]))
    return job, {
        "mlm_loss": last.get("val_mlm_loss", last_val_loss(ckpt)), "nsp_acc": last.get("val_nsp_acc"),
        "gate": float(np.mean([embedding_gate(input_embeddings(model), tokenizer, s) for s in DATA_SEEDS])),
        "16": test(16, MEAN_POOLING), "64": test(64, MEAN_POOLING),
        "cloze_zero_shot": float(np.mean([cloze_zero_shot(ckpt, s) for s in DATA_SEEDS])),
        "cloze_16": test(16, CLOZE_16),
        "fill_mask": fill_mask_score(model, tokenizer),
        **dict(zip(("lessons", "clashes"), polarity_lessons(row, seed))),
    }


# ----------------------------------------------------------------------------
# why: how often a recipe's batches ask for a review's polarity (from the batches alone, no model)

def occurrences(ids, word, hidden):
    """`word` (token ids) in each row of ids (B, T): (B,) counts of it wholly hidden, and of it wholly visible."""
    n = ids.shape[1] - len(word) + 1
    starts = np.all([ids[:, k:k + n] == token for k, token in enumerate(word)], axis=0)   # (B, n)
    n_hidden = sum(hidden[:, k:k + n].astype(int) for k in range(len(word)))               # (B, n)
    return (starts & (n_hidden == len(word))).sum(1), (starts & (n_hidden == 0)).sum(1)


def batches_like(row, seed, n_sequences):
    """(tokenizer, per_run, batches): n_sequences of batches drawn as a run of `row` draws its own, each as
    (ids before masking, hidden), both (B, T); per_run(count) turns a count over them into one over the run.
    n_sequences=None draws as many batches as the run takes."""
    options = cli.build_parser().parse_args(["pretrain-bert", *recipe(row)])
    text, source = load_corpus(options)
    tokenizer = tokenizer_for_run(options, text)
    batcher = pretraining_batcher(options, text, tokenizer, source)
    rng = np.random.default_rng(seed)
    n_batches = options.max_iters if n_sequences is None else n_sequences // options.batch_size

    def batches():
        for _ in range(n_batches):
            batch = batcher.get_batch(rng, options.batch_size)
            hidden = batch["mlm_labels"] != IGNORE_INDEX                                 # (B, T) chosen
            yield np.where(hidden, batch["mlm_labels"], batch["input_ids"]), hidden      # (B, T) before masking

    return tokenizer, lambda count: count * options.max_iters / n_batches, batches()


def polarity_lessons(row, seed, n_sequences=12_800):
    """(lessons, clashes) a run of `row` meets in all its steps, estimated on n_sequences of batches like its own.

    A lesson is a sentiment adjective with all its characters chosen for prediction, in a
    sequence where another word of the same polarity (an adjective or a closing) is visible. Only
    then does the polarity help: with one character of 肮脏 hidden the other one names it; with
    both hidden, the review's polarity halves the 40 adjectives it could be. A clash is the same
    adjective with a word of the other polarity visible (an NSP pair whose B is another review).
    """
    tokenizer, per_run, batches = batches_like(row, seed, n_sequences)
    encode = lambda words: [tokenizer.encode(w) for w in words]
    adjectives = {p: encode(words) for p, words in SENTIMENT_WORDS.items()}
    closings = {"negative": encode(NEGATIVE_CLOSINGS), "positive": encode(POSITIVE_CLOSINGS)}
    other = {"negative": "positive", "positive": "negative"}
    lessons = clashes = 0
    for ids, hidden in batches:
        whole, seen = {}, {}                                                         # (B,) per polarity
        for p in other:
            found = [occurrences(ids, w, hidden) for w in adjectives[p]]
            whole[p] = sum(n_hidden for n_hidden, _ in found)
            visible_closings = sum(occurrences(ids, w, hidden)[1] for w in closings[p])
            seen[p] = sum(n_visible for _, n_visible in found) + visible_closings > 0
        lessons += sum(int((whole[p] * seen[p]).sum()) for p in other)
        clashes += sum(int((whole[p] * seen[other[p]]).sum()) for p in other)
    return per_run(lessons), per_run(clashes)


def city_lessons(row, seed, n_sequences=None):
    """{university: lessons} a run of `row` meets in all its steps, counted on as many batches like its own
    (they are rare: an estimate from a sample, as polarity_lessons makes, would be mostly noise).

    A lesson here is a university's name with all its characters chosen, in a sequence where its
    city is visible and no other mention of the name is (that would give it away): only then does
    「我在上海旅行，昨天去了复旦大学参观」 teach that a trip to 上海 means 复旦, as the fill-mask probes
    ask. Where the university bears its city's name (北京, 南京), the visible city is that other
    mention, and the lesson is one in copying it.
    """
    tokenizer, per_run, batches = batches_like(row, seed, n_sequences)
    names = {university: (tokenizer.encode(university), tokenizer.encode(city))
             for city, info in CITIES.items() for university, _ in info.universities}
    lessons = dict.fromkeys(names, 0)
    for ids, hidden in batches:
        for university, (name, city) in names.items():
            name_hidden, name_visible = occurrences(ids, name, hidden)                 # (B,) each
            city_visible = occurrences(ids, city, hidden)[1] > 0
            told = city_visible if name == city else city_visible & (name_visible == 0)
            lessons[university] += int((name_hidden * told).sum())
    return {university: per_run(n) for university, n in lessons.items()}


# ----------------------------------------------------------------------------
# the city link's best case: with lessons in plenty, does a BERT learn that a trip to 上海 means 复旦?

def trip_named_once(rng):
    """A trip of the built-in corpus whose next sentence says 这所大学 instead of naming the university again,
    so that a name hidden whole is not given away by its second mention."""
    return [("这所大学的校园很大，有很多学生。" if sentence.endswith("大学的校园很大，有很多学生。") else sentence)
            for sentence in city_trip(rng)]


def write_trips_corpus(n_documents=40_000, seed=0):
    """The city link's corpus, written once (to a temporary file first, so that no half of it is reused)."""
    if not os.path.exists(TRIPS_CORPUS):
        os.makedirs(os.path.dirname(TRIPS_CORPUS), exist_ok=True)
        rng = np.random.default_rng(seed)
        with open(TRIPS_CORPUS + ".tmp", "w", encoding="utf-8") as f:
            f.write(corpus_text([trip_named_once(rng) for _ in range(n_documents)]))
        os.replace(TRIPS_CORPUS + ".tmp", TRIPS_CORPUS)


def city_link(seeds, n_jobs):
    """Pretrain the CITY_ROWS and print, for each, its city lessons and what it fills each trip probe with."""
    write_trips_corpus()
    jobs = [(row, seed) for row in CITY_ROWS for seed in seeds]
    trip_probes = [probe for probe in fill_mask_probes() if "旅行" in probe.prompt]
    with ProcessPoolExecutor(n_jobs) as pool:
        for (row, seed), seconds in pool.map(pretrain, jobs):
            print(f"  {row}, seed {seed}: " + (f"{seconds / 60:.1f} minutes" if seconds else "reused"), flush=True)
    for row, seed in jobs:
        model, tokenizer, _ = load_pretrained(run_dir(row, seed), expect="bert")
        lessons = ", ".join(f"{university} {n:,.0f}" for university, n in city_lessons(row, seed).items())
        print(f"\n{row}, seed {seed}: city lessons {lessons}")
        for probe in trip_probes:
            show_fill_mask(model, tokenizer, probe)


COLUMNS = (("MLM loss", "mlm_loss", "{:.2f}"), ("gate", "gate", "{:.2f}"), ("16 labels", "16", "{:.2f}"),
           ("64 labels", "64", "{:.2f}"), ("cloze, no label", "cloze_zero_shot", "{:.2f}"),
           ("cloze, 16 labels", "cloze_16", "{:.2f}"), ("fill-mask /10", "fill_mask", "{:.1f}"))


def cell(values, form):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return form.format(values[0])
    return f"{form.format(values.mean())} [{form.format(values.min())}-{form.format(values.max())}]"


def print_table(results, rows, seeds):
    """A Markdown table: one line per row, each cell over the pretraining seeds (the lessons: their mean)."""
    print(f"\n| recipe ({len(seeds)} pretraining seed{'s' if len(seeds) > 1 else ''}) | "
          + " | ".join(name for name, _, _ in COLUMNS) + " | polarity lessons (clashes) per run |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for row in rows:
        found = [results[row][seed] for seed in seeds if seed in results.get(row, {})]
        if found:
            lessons, clashes = np.mean([(r["lessons"], r["clashes"]) for r in found], axis=0).round(-1)
            print(f"| {row} | " + " | ".join(cell([r[key] for r in found], form) for _, key, form in COLUMNS)
                  + f" | {lessons:,.0f} ({clashes:,.0f}) |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="pretraining seeds (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="pretraining and evaluation runs in parallel processes (default %(default)s)")
    parser.add_argument("--count-lessons", action="store_true",
                        help="only count the lessons each run's batches hold (no model is trained or loaded)")
    parser.add_argument("--city-link", action="store_true",
                        help="instead of the table: the city link's best case, a corpus of trips, with and without NSP")
    args = parser.parse_args()
    rows = [row.strip() for row in args.rows.split(",")]
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; the rows are: {', '.join(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.city_link:
        return city_link(seeds, args.jobs)
    if args.count_lessons:
        for row in rows:
            for seed in seeds:
                lessons, clashes = polarity_lessons(row, seed)
                cities = ", ".join(f"{university} {n:,.0f}" for university, n in city_lessons(row, seed).items())
                print(f"{row}, seed {seed}: polarity lessons {lessons:,.0f} (clashes {clashes:,.0f}); "
                      f"city lessons {cities}", flush=True)
        return
    jobs = [(row, seed) for row in rows for seed in seeds]
    started = time.time()
    measured = {}

    print(f"== pretraining {len(jobs)} BERTs ({args.jobs} at a time; finished ones are reused) ==", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        for (row, seed), seconds in pool.map(pretrain, jobs):
            print(f"  {row}, seed {seed}: " + (f"{seconds / 60:.1f} minutes" if seconds else "reused"), flush=True)
        print("== evaluating them ==", flush=True)
        for (row, seed), columns in pool.map(evaluate, jobs):
            measured.setdefault(row, {})[seed] = columns
            print(f"  {row}, seed {seed}: " + ", ".join(f"{key} {value:.3f}" for key, value in columns.items()
                                                       if value is not None), flush=True)
    results_file = os.path.join("runs", "bert_recipes.json")
    results = {}
    if os.path.exists(results_file):              # other rows and seeds, measured before, stay in the file
        with open(results_file, encoding="utf-8") as f:
            results = {row: {int(s): r for s, r in by_seed.items()} for row, by_seed in json.load(f).items()}
    for row, by_seed in measured.items():
        results.setdefault(row, {}).update(by_seed)
    shown = [row for row in ROWS if row in results]
    for row in shown:                              # results from before the lessons were counted
        for seed, columns in results[row].items():
            if "lessons" not in columns:
                columns["lessons"], columns["clashes"] = polarity_lessons(row, seed)
    with open(results_file, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print_table(results, shown, seeds)
    print(f"\n{(time.time() - started) / 60:.1f} minutes; every number is also in {results_file}")


if __name__ == "__main__":
    main()
