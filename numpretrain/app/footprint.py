"""The memory a command's numbers ask for, estimated before anything is allocated, and refused
when it cannot fit.

A size typed on the command line (--n-embd, --batch-size, --labels, --max-new-tokens ... of
10**9) used to run until NumPy's MemoryError, or until the machine swapped. Each command adds up
the parts its numbers size, as `Need`s, and `check_fits` refuses them (a ConfigError: status 2)
when their total is more than this machine's memory, naming the options of the largest part:

    --n-layer 4 and --n-embd 1000000000 need about 768 EB for the weights, their gradients and
    AdamW's two moments (about 768 EB in all); this machine has 25 GB of memory

The estimates are rough on purpose, but not wild: within a factor of about two of the peak
measured on small runs (tests/test_arguments.py checks it). The ceiling is the machine's physical
memory, not what is free at the moment, so the same command is refused or accepted the same way
whatever else runs; a run that would fit only with everything else stopped is still tried.
"""

import os
from dataclasses import dataclass

from numpretrain.errors import ConfigError, check_heads_divide_width

FLOAT_BYTES = 4              # weights, activations and gradients are float32
TRAINING_COPIES = 4          # a weight, its gradient and AdamW's two moments
ID_BYTES = 8                 # token ids and labels are int64 in the batches
SAVED_PER_TOKEN = 2          # per float of the forward pass: the activation kept for backward and its
                             # gradient (measured peaks above the interpreter's: 0.65 to 1.15 times the
                             # estimate, for GPTs and BERTs of 0.2 to 0.9 GB; tests/test_arguments.py)
# What one unit of data costs, measured on the built-in texts. Python's lists and strings dominate:
# a character id above 256 is a 28-byte int object in a list.
BYTES_PER_DOCUMENT = 2_500   # a generated document, its sentences and their ids (measured: 1,000 for
                             # GPT, 2,400 for BERT's lists of sentences)
BYTES_PER_CORPUS_BYTE = 16   # a corpus file's byte, decoded, split and tokenized (measured: 5 for GPT,
                             # 17 for BERT, on the built-in corpus written to a file)
BYTES_PER_REVIEW = 300       # a generated labelled review (measured: 230)
BYTES_PER_GENERATED_TOKEN = 64   # an int64 id (twice, while concatenated), a Python int in the list
                                 # that decodes it, its text


@dataclass
class Need:
    """One part of a command's memory: what it is, its size, and the options that size it."""
    what: str
    nbytes: int
    options: dict            # {"--n-embd": 128, ...}: the typed names and values, for the message


def machine_memory():
    """This machine's physical memory in bytes (None where neither sysconf nor /proc/meminfo tells)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def human(nbytes):
    """1234567 -> "1.2 MB": decimal units, two significant digits at most."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"):
        if nbytes < 1000 or unit == "YB":
            return f"{nbytes:.0f} {unit}" if nbytes >= 10 or unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def named(options):
    """{"--n-layer": 4, "--n-embd": 128} -> "--n-layer 4 and --n-embd 128"."""
    parts = [f"{name} {value}" for name, value in options.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def check_fits(needs, available=None):
    """A ConfigError (the CLI's status 2) when the needs add up to more than the machine's memory."""
    available = machine_memory() if available is None else available
    total = sum(need.nbytes for need in needs)
    if available is None or total <= available:
        return
    largest = max(needs, key=lambda need: need.nbytes)
    verb = "needs" if len(largest.options) == 1 else "need"
    raise ConfigError(f"{named(largest.options)} {verb} about {human(largest.nbytes)} for {largest.what} "
                      f"(about {human(total)} in all); this machine has {human(available)} of memory")


# ----- what a Transformer of given sizes needs -----

def transformer_parameters(n_layer, n_embd, ff_width, vocab_size, positions):
    """Weights of a GPT or BERT body: per block 4 C^2 (attention) + 2 C F (feed-forward) and their
    biases and LayerNorms; the token and position embeddings (V + T) C."""
    C = n_embd
    return n_layer * (4 * C * C + 2 * C * ff_width + 9 * C + ff_width) + (vocab_size + positions) * C + 2 * C


def activation_floats(batch_size, block_size, n_layer, n_head, n_embd, ff_width, scored_positions, vocab_size):
    """Floats one forward pass keeps for backward: per block and token the LayerNorms, q k v,
    projections and residuals (~10 C), the feed-forward's two (T, F) arrays and the attention's
    scores and probabilities (2 nh T); then the logits of the scored positions (V each)."""
    per_token = n_layer * (10 * n_embd + 2 * ff_width + 2 * n_head * block_size)
    return batch_size * block_size * per_token + batch_size * scored_positions * vocab_size


def training_needs(sizes, vocabulary, batch_size, eval_batches, ff_width=None, scored_positions=None):
    """The weights and their training state, one micro-batch's activations and the validation batches.

    sizes: {"--n-layer": L, "--n-head": nh, "--n-embd": C, "--block-size": T} as typed;
    vocabulary: {"--vocab-size": V} when the option sets it, else {"": V} (a guess, named nowhere).
    ff_width: the feed-forward width (4 C, as GPT-2 and BERT); scored_positions: the positions
    per row whose logits are computed (GPT: every one; BERT: the masked ones).
    """
    L, nh, C, T = (sizes[name] for name in ("--n-layer", "--n-head", "--n-embd", "--block-size"))
    V = next(iter(vocabulary.values()))
    F = 4 * C if ff_width is None else ff_width
    scored = T if scored_positions is None else min(scored_positions, T)
    named_vocabulary = {name: value for name, value in vocabulary.items() if name}
    weights = transformer_parameters(L, C, F, V, T) * FLOAT_BYTES * TRAINING_COPIES
    activations = activation_floats(batch_size["--batch-size"], T, L, nh, C, F, scored, V) \
        * FLOAT_BYTES * SAVED_PER_TOKEN
    validation = eval_batches["--eval-iters"] * batch_size["--batch-size"] * T * 2 * ID_BYTES   # inputs, targets
    return [
        Need("the weights, their gradients and AdamW's two moments", weights,
             {"--n-layer": L, "--n-embd": C, **named_vocabulary}),
        Need("the activations of one batch", activations,
             {**batch_size, "--block-size": T, "--n-layer": L, "--n-head": nh, "--n-embd": C, **named_vocabulary}),
        Need("the fixed validation batches", validation, {**eval_batches, **batch_size, "--block-size": T}),
    ]


CHAR_VOCABULARY_GUESS = 1_000   # a character tokenizer's vocabulary, unknown before the corpus is read


def corpus_need(options):
    """The text a pretraining run reads: --corpus FILE by its size, or the built-in corpus by --n-documents."""
    if options.corpus:
        size = os.path.getsize(options.corpus) if os.path.isfile(options.corpus) else 0   # a missing file: said later
        return Need("the corpus, decoded and tokenized", size * BYTES_PER_CORPUS_BYTE, {"--corpus": options.corpus})
    return Need("the generated corpus", options.n_documents * BYTES_PER_DOCUMENT, {"--n-documents": options.n_documents})


def pretrain_needs(options, train, bert=False):
    """What pretrain-gpt or pretrain-bert asks for with these options (and TrainConfig).

    Heads that do not divide the width are refused first, as such: the model could not be built at any size.
    """
    check_heads_divide_width(options.n_embd, options.n_head)
    sizes = {"--n-layer": options.n_layer, "--n-head": options.n_head, "--n-embd": options.n_embd,
             "--block-size": options.block_size}
    bpe = getattr(options, "tokenizer", "char") == "bpe"
    vocabulary = {"--vocab-size": options.vocab_size} if bpe else {"": CHAR_VOCABULARY_GUESS}
    return [*training_needs(sizes, vocabulary, {"--batch-size": train.batch_size}, {"--eval-iters": train.eval_iters},
                            scored_positions=options.max_predictions if bert else None),
            corpus_need(options)]


def review_needs(options):
    """finetune --task reviews --labels N: the built-in reviews are generated before the model is read."""
    if options.task != "reviews" or not options.labels:
        return []
    return [Need("the generated labelled reviews", options.labels * BYTES_PER_REVIEW, {"--labels": options.labels})]


def finetune_needs(model, ckpt, n_examples, batch_size, max_length):
    """A classifier's training, once its body is read: the weights' gradients and AdamW's moments,
    the encoded training texts (ids, segments, mask: (N, T) each) and one batch's activations."""
    body = model.body.config
    ff_width = getattr(body, "intermediate_size", 4 * body.n_embd)
    parameters = model.num_parameters()
    activations = activation_floats(batch_size, max_length, body.n_layer, body.n_head, body.n_embd, ff_width,
                                    max_length, body.vocab_size) * FLOAT_BYTES * SAVED_PER_TOKEN
    return [Need("the gradients and AdamW's two moments", parameters * FLOAT_BYTES * (TRAINING_COPIES - 1),
                 {"--ckpt": ckpt}),
            Need("the encoded training texts", n_examples * max_length * 3 * ID_BYTES,
                 {"--block-size": max_length}),
            Need("the activations of one batch", activations, {"--batch-size": batch_size, "--block-size": max_length})]


def generate_needs(options):
    """generate --max-new-tokens N: the continuation is kept whole, as ids and then as text."""
    return [Need("the generated tokens", options.max_new_tokens * BYTES_PER_GENERATED_TOKEN,
                 {"--max-new-tokens": options.max_new_tokens})]
