"""Asking a pretrained model what it learned: next-token distributions, probe scores, fill-mask, NSP.

GPT probes compare log P(continuation | prompt) of the corpus's expected continuations
with its contrasting ones ("医生拿起了" -> 听诊器 rather than 吉他); BERT fills [MASK]s,
one position at a time, most confident first, and judges sentence pairs.

A character the model's vocabulary lacks is read as [UNK], which tells the model nothing, so
each command says so once, on stderr, before it answers (`warn_unknown_characters`).
"""

import sys

import numpy as np

from numpretrain.autograd.softmax import stable_softmax
from numpretrain.autograd.tensor import no_grad
from numpretrain.models.bert import NSP_IS_NEXT
from numpretrain.tokenizers import CharTokenizer
from numpretrain.tokenizers.special_tokens import SPECIAL_TOKEN_PATTERN, SPECIAL_TOKENS

MASK_TOKEN = "[MASK]"
UNKNOWN_SHOWN = 8       # unknown characters a warning names; the rest it counts


# ----- characters the model does not know -----

def unknown_characters(tokenizer, text):
    """The characters of `text` that `tokenizer` reads as [UNK], each once, in order of appearance.

    Special-token literals ("[MASK]") are tokens, not characters; byte-level BPE knows every character.
    """
    characters = "".join(piece for piece in SPECIAL_TOKEN_PATTERN.split(text) if piece not in SPECIAL_TOKENS)
    return [ch for ch in dict.fromkeys(characters) if tokenizer.encode(ch) == [tokenizer.unk_id]]


def print_warning(message):
    """How the commands warn: a line on stderr, apart from their answer on stdout."""
    print(message, file=sys.stderr)


def warn_unknown_characters(tokenizer, text, what, consequence="", warn=print_warning):
    """Warn, in one message, when characters of `text` (called `what`) will be read as [UNK].

    It names the first few, counts them all and says what the vocabulary covers, e.g. "warning: 2
    characters of the prompt are unknown to the model and read as [UNK]: 'H' 'i'; the model knows
    only the 392 characters of its training text". Returns the unknown characters ([]: nothing said).
    """
    unknown = unknown_characters(tokenizer, text)
    if unknown:
        shown = " ".join(repr(ch) for ch in unknown[:UNKNOWN_SHOWN])
        more = f" and {len(unknown) - UNKNOWN_SHOWN} more" if len(unknown) > UNKNOWN_SHOWN else ""
        if isinstance(tokenizer, CharTokenizer):
            known = (f"the model knows only the {tokenizer.vocab_size - tokenizer.first_non_special_id} "
                     f"characters of its training text")
        else:
            known = f"the model's vocabulary has {tokenizer.vocab_size} tokens"
        count = "1 character of" if len(unknown) == 1 else f"{len(unknown)} characters of"
        verb = "is" if len(unknown) == 1 else "are"
        warn(f"warning: {count} {what} {verb} unknown to the model and read as [UNK]: {shown}{more}; "
             f"{known}{consequence}")
    return unknown


def warn_unknown_in_probes(tokenizer, probes, warn=print_warning):
    """Warn once when the probes (prompts and answers) hold characters the model does not know."""
    text = "".join(p.prompt + "".join(p.expected) + "".join(p.contrasting) for p in probes)
    return warn_unknown_characters(tokenizer, text, "the probe questions",
                                   ", so its probe scores say little", warn)


def _log_softmax(logits):
    _, lse = stable_softmax(logits)
    return logits - lse


def next_token_distribution(model, tokenizer, prompt, k=10):
    """The k most likely next tokens after prompt: [(token text, probability)]."""
    ids = np.asarray([tokenizer.encode(prompt)], dtype=np.int64)
    probs, _ = stable_softmax(model.next_token_logits(ids[:, -model.config.block_size:])[0])
    top = np.argsort(-probs)[:k]
    return [(tokenizer.decode([int(i)]), float(probs[i])) for i in top]


def continuation_logprob(model, tokenizer, prompt, continuation):
    """log P(continuation | prompt) under a GPT, summed over the continuation's tokens."""
    prompt_ids, continuation_ids = tokenizer.encode(prompt), tokenizer.encode(continuation)
    ids = np.asarray([prompt_ids + continuation_ids], dtype=np.int64)[:, -model.config.block_size - 1:]
    n = len(continuation_ids)
    with no_grad():
        logits, _ = model(ids[:, :-1])
    logprobs = _log_softmax(logits.data[0, -n:])                   # (n, V)
    return float(logprobs[np.arange(n), ids[0, -n:]].sum())


def score_probe(model, tokenizer, probe):
    """{"expected": {answer: logprob}, "contrasting": {...}, "correct": best expected > best contrasting}."""
    expected = {a: continuation_logprob(model, tokenizer, probe.prompt, a) for a in probe.expected}
    contrasting = {a: continuation_logprob(model, tokenizer, probe.prompt, a) for a in probe.contrasting}
    return {"expected": expected, "contrasting": contrasting,
            "correct": max(expected.values()) > max(contrasting.values())}


# ----- BERT -----

def encode_masked(tokenizer, text):
    """[CLS] text [SEP] as ids, with [MASK] written literally in the text."""
    return [tokenizer.cls_id] + tokenizer.encode(text) + [tokenizer.sep_id]


def fill_mask(model, tokenizer, text, top_k=5, warn=print_warning):
    """Fill every [MASK] of text with a BERT.

    Returns (candidates, filled_text): candidates maps each masked position (in the order of
    the text) to its top_k (token, probability) from one pass over the original text; the
    filled text is the best joint filling found greedily: fill the most confident position,
    predict the rest again with it in place, and repeat. Characters the model does not know
    are said to `warn` first.
    """
    if MASK_TOKEN not in text:
        raise ValueError(f"fill-mask needs at least one {MASK_TOKEN} in the text, got {text!r}")
    warn_unknown_characters(tokenizer, text, "the text", warn=warn)
    ids = np.asarray([encode_masked(tokenizer, text)], dtype=np.int64)
    if ids.shape[1] > model.config.max_position:
        raise ValueError(f"the text is {ids.shape[1]} tokens with [CLS] and [SEP], longer than "
                         f"max_position={model.config.max_position}")
    masked = [int(i) for i in np.flatnonzero(ids[0] == tokenizer.mask_id)]
    special = np.arange(tokenizer.first_non_special_id)

    def probabilities(current):
        with no_grad():
            logits = model(current)["mlm_logits"].data[0]          # (T, V)
        logits[:, special] = -np.inf                               # never propose [PAD], [MASK] ...
        probs, _ = stable_softmax(logits)
        return probs

    probs = probabilities(ids)
    candidates = {}
    for position in masked:
        top = np.argsort(-probs[position])[:top_k]
        candidates[position] = [(tokenizer.decode([int(t)]), float(probs[position, t])) for t in top]
    current, remaining = ids.copy(), list(masked)
    while remaining:
        best = max(remaining, key=lambda p: probs[p].max())
        current[0, best] = int(probs[best].argmax())
        remaining.remove(best)
        if remaining:
            probs = probabilities(current)
    filled = tokenizer.decode([int(t) for t in current[0, 1:-1]])
    return candidates, filled


def nsp_probability(model, tokenizer, sentence_a, sentence_b, warn=print_warning):
    """P(B follows A) by BERT's next-sentence head: [CLS] A [SEP] B [SEP], segments 0 and 1.

    Characters the model does not know are said to `warn` first.
    """
    warn_unknown_characters(tokenizer, sentence_a + sentence_b, "the sentences", warn=warn)
    a, b = tokenizer.encode(sentence_a), tokenizer.encode(sentence_b)
    ids = [tokenizer.cls_id] + a + [tokenizer.sep_id] + b + [tokenizer.sep_id]
    if len(ids) > model.config.max_position:
        raise ValueError(f"the pair is {len(ids)} tokens with [CLS] and [SEP]s, longer than "
                         f"max_position={model.config.max_position}")
    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    with no_grad():
        logits = model(np.asarray([ids]), np.asarray([segments]))["nsp_logits"].data[0]
    probs, _ = stable_softmax(logits)
    return float(probs[NSP_IS_NEXT])

