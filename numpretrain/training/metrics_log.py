"""metrics.jsonl: one JSON object per logged step and per evaluation, appended as training goes.

On --resume the log is brought back to the checkpoint: records of steps after it are dropped
(they will be logged again). Nothing good is ever lost on the way. A damaged line (a line cut by a
crash, bytes that are not UTF-8, text that is not a JSON object with a "step") is reported and
moved, as it was, to metrics.jsonl.damaged; every good record stays, in order and byte for byte.
When there is nothing to drop and nothing damaged the file is not touched at all, so resuming a
finished run changes nothing.
"""

import json
import os

from numpretrain.errors import CheckpointError
from numpretrain.storage.atomic import write_bytes
from numpretrain.storage.json_files import json_lines

METRICS_FILE = "metrics.jsonl"
DAMAGED_SUFFIX = ".damaged"


def append_record(run_dir, record):
    """Append one record (a dict; NaN and Infinity written as Python's json writes them)."""
    path = os.path.join(run_dir, METRICS_FILE)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a file; move it away to log this run") from None


def keep_records_up_to(run_dir, step, log):
    """Drop the records of steps after `step`, set damaged lines aside (each reported through `log`);
    step None drops every record (the run starts over)."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a file; move it away to resume this run")
    kept, damaged, dropped = [], [], 0
    for number, raw, record, problem in json_lines(path, allow_nan=True):
        if problem is None and not _has_step(record):
            problem = "not a JSON object with an integer \"step\""
        if problem is not None:
            log(f"{path}: line {number} is damaged ({problem}); moved to {METRICS_FILE}{DAMAGED_SUFFIX}")
            damaged.append(raw if raw.endswith(b"\n") else raw + b"\n")
        elif step is not None and record["step"] <= step:
            kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
        else:
            dropped += 1
    if not damaged and not dropped and _ends_with_newline(path):
        return
    if damaged:                      # first the damaged lines, kept aside; then the log without them
        aside = path + DAMAGED_SUFFIX
        earlier = _read_bytes(aside) if os.path.isfile(aside) else b""
        write_bytes(aside, earlier + b"".join(damaged))
    write_bytes(path, b"".join(kept))   # atomically: a crash here keeps the whole old log


def _has_step(record):
    return (isinstance(record, dict) and isinstance(record.get("step"), int)
            and not isinstance(record["step"], bool))


def _ends_with_newline(path):
    """True for an empty file or one whose last byte is a newline (the next record starts a line)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()
