"""What each `python -m numpretrain COMMAND` does, given its parsed options (see cli.py)."""

import numpy as np

from . import probing
from .data.probes import probes
from .runs import load_pretrained


def pretrain_gpt(options):
    from .pretrain import pretrain_gpt as run
    trainer = run(options)
    print(f"saved to {options.out}")
    return 0 if trainer else 1


def pretrain_bert(options):
    from .pretrain import pretrain_bert as run
    run(options)
    print(f"saved to {options.out}")


def generate(options):
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="gpt")
    if not options.prompt:
        raise ValueError("--prompt is empty: give the text to continue, e.g. --prompt 今天天气很")
    ids = tokenizer.encode(options.prompt)
    if len(ids) > model.config.block_size:
        raise ValueError(f"the prompt is {len(ids)} tokens, longer than the model's context of "
                         f"{model.config.block_size} tokens")
    for i in range(options.num_samples):
        out = model.generate(np.asarray([ids]), options.max_new_tokens, temperature=options.temperature,
                             top_k=options.top_k, top_p=options.top_p, seed=options.seed + i,
                             greedy=options.greedy, use_cache=not options.no_cache)
        print(tokenizer.decode([int(t) for t in out[0]]))
        if options.num_samples > 1:
            print("---")


def probe(options):
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="gpt")
    correct = 0
    all_probes = probes()
    for p in all_probes:
        result = probing.score_probe(model, tokenizer, p)
        correct += result["correct"]
        best_expected = max(result["expected"], key=result["expected"].get)
        best_contrasting = max(result["contrasting"], key=result["contrasting"].get)
        print(f"[{'ok' if result['correct'] else '--'}] {p.kind:12s} {p.prompt} -> "
              f"{best_expected} (log p {result['expected'][best_expected]:.2f}) vs "
              f"{best_contrasting} ({result['contrasting'][best_contrasting]:.2f})")
    print(f"{correct}/{len(all_probes)} probes answered correctly")


def fill_mask(options):
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="bert")
    candidates, filled = probing.fill_mask(model, tokenizer, options.text, options.top_k)
    for n, (position, top) in enumerate(candidates.items(), 1):
        shown = "  ".join(f"{token} {p:.3f}" for token, p in top)
        print(f"[MASK] #{n} (position {position}): {shown}")
    print(f"filled: {filled}")


def nsp(options):
    model, tokenizer, _ = load_pretrained(options.ckpt, expect="bert")
    p = probing.nsp_probability(model, tokenizer, options.sentence_a, options.sentence_b)
    print(f"P(B follows A) = {p:.3f}")


def finetune(options):
    from .finetune import finetune as run
    _, reports = run(options)
    for split, report in reports.items():
        print(f"\n{split} split:\n{report}")
    if options.out:
        print(f"\nsaved to {options.out}")


def classify(options):
    from .finetune import classify_texts
    for text, label, probabilities in classify_texts(options.ckpt, options.texts):
        shown = "  ".join(f"{name} {p:.3f}" for name, p in probabilities.items())
        print(f"{label}\t{shown}\t{text}")
