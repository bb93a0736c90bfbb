"""The project's error types, and the checks every layer shares.

Every error numpretrain raises on purpose derives from `NumpretrainError`, so a
caller (the CLI, a demo) can catch "our" failures in one place and print their
message without a traceback. Each concrete type also derives from `ValueError`,
because in every case the problem is a bad value handed to us (a file's
contents, a config) rather than a bug in the code.

Messages name the file when there is one, then the problem, e.g.
``DataError("corpus.txt: not valid UTF-8 at byte 1234")``.

A message about a setting names it as the code does, in one of three forms: ``Owner.field``
("TrainConfig.max_iters must be positive, got 0"), ``field=value`` ("n_embd=128 is not
divisible by n_head=3"), or the field's name opening the message ("temperature must be a finite
number >= 0, got -1"). A library user sees the fields they passed; the command line rewords exactly these
forms into its options ("--max-iters must be positive, got 0", app/cli.py: in_options).

Below the types are the checks that several layers make (token ids in range, heads that
divide the width), written once here because every layer may import this file.
"""

import numpy as np

# A message quoting a hostile file (a 60 MB key, a name nested a thousand deep) is cut in its middle
# to this many characters: its start names the file, its end the rule that was broken.
MAX_MESSAGE_CHARS = 4000


class NumpretrainError(Exception):
    """Base class of every error numpretrain raises deliberately."""

    def __init__(self, message=""):
        message = str(message)
        if len(message) > MAX_MESSAGE_CHARS:
            half = MAX_MESSAGE_CHARS // 2
            message = f"{message[:half]} [... {len(message) - 2 * half:,} characters cut ...] {message[-half:]}"
        super().__init__(message)


class DataError(NumpretrainError, ValueError):
    """Bad input data: a missing or non-UTF-8 file, an empty corpus, a corpus
    shorter than one block, a malformed label row, a token id out of range."""


class CheckpointError(NumpretrainError, ValueError):
    """A broken or hostile checkpoint, config, tokenizer or vocabulary file."""


class ConfigError(NumpretrainError, ValueError):
    """A configuration that cannot work (e.g. a head count that does not divide
    the width, a block size larger than the model's context)."""


# ----- the checks more than one layer makes, written once -----

def check_ids_in_range(ids, size, what="token id", where="", error=ValueError):
    """Raise `error` unless every id lies in [0, size) (with size None: is not negative).

    ids: integers of any shape (an array, a list); an empty one passes. The message names
    `where` (a module path, a file), the first bad id in reading order and the valid range:
    "GPT: token id 70 is out of range; token ids must be in [0, 65)". Each caller keeps its
    own exception type: DataError for a file's contents, IndexError for a table lookup.
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        return
    too_big = size is not None and ids.max() >= size   # min and max first: no mask unless one is bad
    if ids.min() >= 0 and not too_big:
        return
    bad = (ids < 0) if size is None else (ids < 0) | (ids >= size)
    first_bad = ids[bad].flat[0]
    allowed = "be non-negative" if size is None else f"be in [0, {size})"
    prefix = f"{where}: " if where else ""
    raise error(f"{prefix}{what} {first_bad} is out of range; {what}s must {allowed}")


def check_heads_divide_width(n_embd, n_head, where=""):
    """ConfigError unless n_head divides n_embd: each head gets n_embd / n_head channels."""
    if n_embd % n_head:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}n_embd={n_embd} is not divisible by n_head={n_head} "
                          f"(each head gets n_embd / n_head channels)")
