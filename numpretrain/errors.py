"""The project's error types.

Every error numpretrain raises on purpose derives from `NumpretrainError`, so a
caller (the CLI, a demo) can catch "our" failures in one place and print their
message without a traceback. Each concrete type also derives from `ValueError`,
because in every case the problem is a bad value handed to us (a file's
contents, a config) rather than a bug in the code.

Messages name the file when there is one, then the problem, e.g.
``DataError("corpus.txt: not valid UTF-8 at byte 1234")``.
"""


class NumpretrainError(Exception):
    """Base class of every error numpretrain raises deliberately."""


class DataError(NumpretrainError, ValueError):
    """Bad input data: a missing or non-UTF-8 file, an empty corpus, a corpus
    shorter than one block, a malformed label row, a token id out of range."""


class CheckpointError(NumpretrainError, ValueError):
    """A broken or hostile checkpoint, config, tokenizer or vocabulary file."""


class ConfigError(NumpretrainError, ValueError):
    """A configuration that cannot work (e.g. a head count that does not divide
    the width, a block size larger than the model's context)."""
