"""Writes that never leave a half-written file, and the faults the crash tests inject.

Every file numpretrain saves whole (weights, training state, configs, tokenizers, the metrics log
cut back on resume) goes through `write_chunks`: the bytes go to a temporary dot-file in the
target's directory, are flushed and fsync'ed, then `os.replace` puts them in place. A crash, a
full disk or Ctrl-C mid-save leaves the previous file exactly as it was. (The metrics log grows
by appended lines; a line cut by a crash is dropped on resume.)
"""

import os
import re
import secrets
import signal

from numpretrain.errors import CheckpointError

# --------------------------------------------------------------------------
# Fault injection, for the crash tests (tests/test_reliability.py)
# --------------------------------------------------------------------------
# A test starts `python -m numpretrain ...` with NUMPRETRAIN_FAULT set to one
# fault; unset (always, outside those tests) nothing changes.
#   kill-during-save:N  SIGKILL the process halfway through writing the Nth
#                       safetensors file it saves (a training run saves
#                       model.safetensors, then training_state.safetensors, at
#                       each checkpoint: odd N hit the first, even N the second;
#                       formats.save_safetensors counts them)
#   nan-grad:N          make a gradient NaN at step N (training/trainer.py)
FAULT_ENV = "NUMPRETRAIN_FAULT"


def injected_fault(kind):
    """N when NUMPRETRAIN_FAULT is "kind:N", else None."""
    name, _, number = os.environ.get(FAULT_ENV, "").partition(":")
    return int(number) if name == kind else None


def kill_this_process():
    """Die at once, as `kill -9` or a power cut would: no cleanup, no finally blocks."""
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------

def _write_chunk(file, chunk):
    """Write one chunk. A seam: tests replace it to inject a full disk."""
    file.write(chunk)


# The temporary file of an atomic write: ".{target name}.{8 hex digits}.tmp".
_TEMP_FILE = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def _temp_path(directory, name):
    return os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")


def remove_stale_temp_files(directory):
    """Delete the temporary files that killed atomic writes left in `directory`.

    A SIGKILL or a power cut between creating a temporary file and renaming it
    leaves the dot-file behind; it is never read, so it is harmless, but it
    wastes space. Call this only on a directory one process writes to (a run
    directory), never while another process may be saving into it.
    Returns the names removed.
    """
    removed = []
    for name in sorted(os.listdir(directory)):
        if _TEMP_FILE.fullmatch(name):
            try:
                os.remove(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass  # gone already, or not ours to remove
    return removed


def _fsync_directory(directory):
    """Make the rename itself durable. Not every OS can open a directory
    (Windows cannot); there the rename is as durable as the OS makes it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data is safe
    finally:
        os.close(fd)


def write_chunks(path, chunks, kill_midway=False):
    """Write an iterable of bytes-like chunks to `path` atomically.

    On any failure the temporary file is removed and the target is untouched.
    An OSError (disk full, permission denied) becomes a CheckpointError that
    names the file and says which step failed; other exceptions propagate as
    they are. `kill_midway` is the fault hook (see `injected_fault`): the
    process kills itself after the second chunk, with the file half-written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    # A dot-file next to the target: same filesystem, so os.replace is atomic.
    temp_path = _temp_path(directory, name)
    step = "create a temporary file"
    created = False
    try:
        # 0o666 lets the process umask decide the permissions, as open() would;
        # O_EXCL so we never write into (or later delete) a file not ours.
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as file:
            step = "write"
            for i, chunk in enumerate(chunks):
                _write_chunk(file, chunk)
                if kill_midway and i == 1:
                    file.flush()          # the header is on disk, the tensors are not
                    kill_this_process()
            step = "flush"
            file.flush()
            step = "fsync"
            os.fsync(file.fileno())
            step = "close"
        step = "rename the temporary file onto it"
        os.replace(temp_path, path)
    except BaseException as error:
        if created:
            try:
                os.remove(temp_path)
            except OSError:
                pass  # already renamed into place, or the directory vanished
        if isinstance(error, OSError):
            reason = error.strerror or str(error)
            raise CheckpointError(
                f"{path}: could not save (failed to {step}: {reason}); "
                "the previous file, if any, is unchanged") from error
        raise
    _fsync_directory(directory)


def write_bytes(path, data):
    """Replace the file at `path` with `data`, atomically."""
    write_chunks(path, [data])


def write_text(path, text):
    """Replace the file at `path` with `text` encoded as UTF-8, atomically."""
    write_bytes(path, text.encode("utf-8"))
