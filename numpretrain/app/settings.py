"""A run's settings: recorded in its folder when it starts, taken back from there by --resume.

A run folder's config.json holds, next to the model config ("model") and the TrainConfig
("train"), every other option of the command that made the run ("options": {"n_documents": 2000,
"n_layer": 4, ...}, each under its name in the parser: --n-documents is n_documents) and the
numpretrain version that made it. Each value is the one the run used, typed or defaulted; a
default warm-up shortened to fit a short run is recorded shortened.

`--resume` continues that run and no other: every setting comes back from config.json, so
`--resume` alone is enough. An option typed again with the run's value is fine; another value is
an error naming both. Only the settings in MAY_CHANGE may change, because they leave what is
already trained alone; they are applied, reported on the first line and written to config.json:

    --max-iters       extends a run, or shortens one to a step it has not passed. The schedule is
                      a function of max_iters, as nanoGPT's: the warm-up stays as recorded and the
                      cosine decay is recomputed to end at the new max_iters, so the remaining
                      steps follow the longer (or shorter) run's curve. Extending a finished run
                      therefore raises its learning rate from min_lr to where the longer run would
                      be at that step (the first line says how far). config.json then describes the
                      rest of the run exactly; no uninterrupted run equals one whose end moved.
    --eval-interval   how often to evaluate and checkpoint, and
    --log-interval    how often to print and log a step: neither touches the weights or the RNGs;
    --skip-nonfinite  changes nothing while every step is finite, and is the way on after a divergence;
    --grad-accum      how each step's batch is cut into micro-batches, so that a run saved under
                      `mpiexec -n N` can go on under another rank count: the batches stay the same;
                      the order the gradients are added in (and, with dropout, the masks) follow the
                      micro-batches. Ranks x --grad-accum kept equal (mpiexec -n 2 to one process
                      with --grad-accum 2) continues bit for bit (docs/distributed.md).

--eval-iters stays: the validation loss is a mean over that many fixed batches, and another count
would change what the val_loss curve measures halfway through. A resume that changes nothing
ends bit for bit where the uninterrupted run ends (tests/test_resume.py).

A folder made before "options" was recorded still resumes: its model and training settings come
from "model" and "train", and the options it does not record are taken from the command line,
with a note, and recorded from then on.
"""

import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

from numpretrain.errors import CheckpointError, ConfigError, DataError, NumpretrainError
from numpretrain.storage.atomic import remove_stale_temp_files
from numpretrain.storage.runs import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    check_fits_weights_file,
    folder_problem,
    load_config,
    load_run_record,
    save_config,
)
from numpretrain.training.data_parallel import world
from numpretrain.training.schedules import warmup_cosine_lr
from numpretrain.training.metrics_log import METRICS_FILE
from numpretrain.training.trainer import STATE_FILE, TrainConfig, checkpoint_step

NOT_SETTINGS = ("command", "out", "resume", "overwrite", "given")   # where a run is and how it was asked for
MAY_CHANGE = ("max_iters", "eval_interval", "log_interval", "skip_nonfinite", "grad_accum")
TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))     # recorded in "train", not again in "options"


def option(name):
    """A setting's name as the command line spells it: max_iters -> --max-iters."""
    return "--" + name.replace("_", "-")


def shown(value):
    """A setting's value as a message shows it: flags as on/off, an option not given as such."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return "(not given)" if value is None else str(value)


def library_version():
    """numpretrain.__version__, read from the loaded package: importing the top-level package
    from a layer below it would go up (tests/test_layout.py), and it is always loaded first."""
    return sys.modules["numpretrain"].__version__


# ----- a new run: its settings written down -----

def run_options(options):
    """{name: value} of every option of a run that is not a TrainConfig field (those are in "train")."""
    return {name: value for name, value in vars(options).items()
            if name not in NOT_SETTINGS and name not in TRAIN_FIELDS}


OLD_RUN_FILES = (STATE_FILE, METRICS_FILE, MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE)   # config.json last:
                                                    # until it goes, the folder still says what it held


def check_new_run_folder(out, overwrite=False, ckpt=None):
    """--out of a new run: nothing there yet, or a folder without a run in it; with --overwrite,
    a run folder of any kind (replaced by `record_run`). --out naming the --ckpt a fine-tuning
    starts from is said as such: the run being read would be the one replaced."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"{out}: exists and is not a directory; --out needs a directory for the run")
    if overwrite:
        return
    if ckpt is not None and same_folder(out, ckpt):
        raise DataError(f"--out {out} is --ckpt, the pretrained run this fine-tuning starts from: it would be "
                        f"replaced; choose another --out (or pass --overwrite to replace it)")
    if os.path.exists(os.path.join(out, CONFIG_FILE)):
        raise DataError(f"{out}: already holds {held_run(out)}; pass --resume to continue it, choose another "
                        f"--out, or pass --overwrite to replace it with a new run")


def same_folder(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:                               # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def held_run(out):
    """"a gpt run", "a fine-tuning run" ... as config.json says; "a run" if it cannot be read."""
    try:
        return run_kind(load_config(out).to_dict()["model_type"]) + " run"
    except (NumpretrainError, OSError, KeyError, TypeError):
        return "a run"


def remove_old_run(out):
    """--overwrite: the files of the run `out` held, so no stale training state or metrics stay beside
    the new run's (a later --resume would take them up); files of the user's own stay."""
    remove_stale_temp_files(out)
    for name in OLD_RUN_FILES:
        path = os.path.join(out, name)
        if os.path.isfile(path):
            os.remove(path)


@dataclass
class Resumed:
    """What `resume_settings` found in --out: the run's model config, the numpretrain version
    that made it, and whether config.json is to be written again (a setting changed, or an old
    folder gets the options it did not record)."""
    model_config: object
    version: str | None
    changed: bool


def open_run(options, model_types, log=print):
    """Before anything is computed: a resumed run's settings taken back into `options` (a Resumed),
    or, for a new run, its --out checked (None). A run without --out (a fine-tuning) has no folder."""
    overwrite = getattr(options, "overwrite", False)
    if getattr(options, "resume", False):
        if overwrite:
            raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one of them")
        return resume_settings(options, model_types, log)
    if options.out and world().writes_files:   # under mpiexec, rank 0's folder to check and write
        check_new_run_folder(options.out, overwrite, getattr(options, "ckpt", None))
    elif overwrite and not options.out:
        raise ConfigError("--overwrite replaces the run in --out: give --out DIR")
    return None


def record_run(options, resumed, model_config, train, tokenizer):
    """Write a new run's tokenizer.json and config.json; for a resumed run, config.json again
    when a setting changed. Called once the run is known to be able to start. Under mpiexec,
    rank 0 alone writes."""
    out = options.out
    if not world().writes_files:
        return
    if resumed is None:
        if getattr(options, "overwrite", False) and os.path.isdir(out):
            remove_old_run(out)
        os.makedirs(out, exist_ok=True)
        tokenizer.save(os.path.join(out, TOKENIZER_FILE))
        save_config(out, model_config, asdict(train), run_options(options), library_version())
    elif resumed.changed:
        save_config(out, model_config, asdict(train), run_options(options), resumed.version)


# ----- --resume: the settings taken back -----

@contextmanager
def naming_the_record(resumed, out):
    """Around the checks of a run's settings: for a resumed run, whose settings came from its
    config.json rather than from what was typed (a hand-edited "options" entry, say), an error
    also names that file."""
    try:
        yield
    except (NumpretrainError, ValueError) as error:
        path = os.path.join(out, CONFIG_FILE) if out else CONFIG_FILE
        if resumed is None or path in str(error):
            raise
        raise ConfigError(f"{error} (--resume took this run's settings from {path})") from None


def resume_settings(options, model_types, log=print):
    """Check that --out holds a run of one of `model_types`, and make `options` that run's settings.

    A CheckpointError says what --out holds when it holds no such run (it never starts a new one);
    a ConfigError names the option and both values when a typed option differs from the run's,
    other than MAY_CHANGE's. Logs the first line: the step resumed from, and each change.
    """
    out = options.out
    model_config = resumable_model(out, model_types)
    config_path = os.path.join(out, CONFIG_FILE)
    record = load_run_record(out)
    old_train = recorded_train_config(record, config_path)
    recorded = recorded_settings(model_config, old_train, record)
    step = checkpoint_step(out)
    changes = typed_changes(options, recorded, config_path)
    if "max_iters" in changes:
        check_new_end(changes["max_iters"][1], step, old_train, out)
    unrecorded = [name for name in vars(options) if name not in NOT_SETTINGS and name not in recorded]
    for name, value in recorded.items():
        if hasattr(options, name) and name not in changes:
            setattr(options, name, value)

    log(first_line(out, step, old_train, changes))
    if unrecorded:
        log(f"note: {config_path} does not record {', '.join(map(option, unrecorded))} (a run made by an "
            f"older numpretrain): taken from this command line, and recorded from now on")
    if record["numpretrain_version"] not in (None, library_version()):
        log(f"note: {out} was made by numpretrain {record['numpretrain_version']}, and is continued by "
            f"{library_version()}")
    return Resumed(model_config, record["numpretrain_version"], bool(changes or unrecorded))


def resumable_model(out, model_types):
    """The model config of the run in `out`; an error saying what `out` holds if it is not such a run."""
    if not out:
        raise DataError("--resume continues the run in --out: give --out DIR")
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"{out}: a file, not a run folder; --resume continues the run in the folder --out names")
    problem = folder_problem(out, needs=(CONFIG_FILE, TOKENIZER_FILE))
    if problem:
        raise CheckpointError(f"{problem}; there is no run to continue there (without --resume, "
                              f"a new run starts in --out)")
    model_config = load_config(out)
    model_type = model_config.to_dict()["model_type"]
    if model_type not in model_types:
        raise CheckpointError(f"{out}: holds {run_kind(model_type)} run, not {run_kind(model_types[0])} run")
    if os.path.exists(os.path.join(out, MODEL_FILE)):     # no absurd sizes: refuse before allocating
        check_fits_weights_file(model_config, os.path.join(out, CONFIG_FILE), os.path.join(out, MODEL_FILE))
    return model_config


def run_kind(model_type):
    return "a fine-tuning" if model_type.endswith("_classifier") else f"a {model_type}"


def recorded_train_config(record, config_path):
    """The TrainConfig config.json records; a folder without one is not a training run."""
    if record["train"] is None:
        raise CheckpointError(f"{config_path}: records no training settings (a model saved outside a "
                              f"training run), so there is no run to continue")
    try:
        return TrainConfig(**record["train"])
    except (TypeError, ConfigError) as error:
        raise CheckpointError(f"{config_path}: its 'train' section is not a TrainConfig: {error}") from None


def recorded_settings(model_config, train, record):
    """{option name: value} of every setting config.json records: its "options", its TrainConfig and,
    for a folder made before "options" was recorded, the model options read back from "model"."""
    recorded = {**model_options(model_config), **asdict(train), **(record["options"] or {})}
    return {name: value for name, value in recorded.items()
            if name not in NOT_SETTINGS}         # a hand-edited "out" must not move the run elsewhere


def model_options(model_config):
    """The model options (--n-layer ...) a GPT or BERT was built from, read back from its config:
    what a folder made before "options" was recorded says about them."""
    config = model_config.to_dict()
    if config["model_type"] not in ("gpt", "bert"):
        return {}
    sizes = {name: config[name] for name in ("n_layer", "n_head", "n_embd", "dropout")}
    if config["model_type"] == "gpt":
        return {**sizes, "block_size": config["block_size"], "post_ln": not config["norm_first"]}
    return {**sizes, "block_size": config["max_position"]}


def typed_changes(options, recorded, config_path):
    """{name: (recorded, typed)} of the MAY_CHANGE settings typed with a new value; a ConfigError
    naming every other typed option whose value differs from the run's."""
    typed = typed_options(options)
    differing = {name: (recorded[name], getattr(options, name)) for name in sorted(typed)
                 if name in recorded and recorded[name] != getattr(options, name)}
    refused = [f"{option(name)} {shown(new)} differs from this run's {shown(old)}"
               for name, (old, new) in differing.items() if name not in MAY_CHANGE]
    if refused:
        raise ConfigError(f"{'; '.join(refused)} ({config_path}); a resumed run keeps its settings "
                          f"(only {', '.join(map(option, MAY_CHANGE))} may change)")
    return differing


def typed_options(options):
    """The names of the options typed on the command line: the parser notes every setting in
    `given` as it is typed (cli.py: NoteGiven). A Namespace not made by the parser counts as typed in full."""
    given = getattr(options, "given", None)
    return set(vars(options)) if given is None else set(given)


def check_new_end(max_iters, step, train, out):
    """A new --max-iters must leave the steps already run, and the warm-up, inside the run."""
    if step is not None and max_iters < step:
        raise ConfigError(f"--max-iters {max_iters} is before step {step}, the last checkpoint of {out}; "
                          f"a run can be shortened only to a step it has not passed")
    if max_iters < train.warmup_iters:
        raise ConfigError(f"--max-iters {max_iters} is shorter than this run's warm-up "
                          f"(--warmup-iters {train.warmup_iters})")


def first_line(out, step, train, changes):
    """"resuming runs/x at step 300 of 600: --max-iters 300 -> 600 (...)"."""
    max_iters = changes["max_iters"][1] if "max_iters" in changes else train.max_iters
    said = [f"{option(name)} {shown(old)} -> {shown(new)}"
            + (schedule_change(step or 0, train, new) if name == "max_iters" else "")
            for name, (old, new) in changes.items()]
    if step is None:
        head = f"resuming {out} from step 0 (it stopped before its first checkpoint)"
    else:
        head = f"resuming {out} at step {step} of {max_iters}"
        if step >= max_iters:
            said.append("the run is finished (--max-iters N extends it)")
    return head + (": " + "; ".join(said) if said else "")


def schedule_change(step, train, max_iters):
    """What a new max_iters does to the learning rate from `step` on, as a parenthesis."""
    old = warmup_cosine_lr(step, train.lr, train.min_lr, train.warmup_iters, train.max_iters)
    new = warmup_cosine_lr(step, train.lr, train.min_lr, train.warmup_iters, max_iters)
    return (f" (the cosine decay now ends at step {max_iters}; the learning rate at step {step} "
            f"goes from {old:.2e} to {new:.2e})")
