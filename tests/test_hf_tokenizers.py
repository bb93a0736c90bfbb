"""Our tokenizers in the Hugging Face tokenizers format, both ways (storage/hf_tokenizers.py).

Without extras: the files read back as the same tokenizer, and what has no exact equivalent is
refused (a BPE two of whose tokens spell the same bytes; a foreign tokenizer.json on the way in).
With transformers: AutoTokenizer gives our ids on the corpus's probes and on mixed text (CJK,
Latin, digits, emoji, spaces, newlines, the special-token literals), decodes as we do, adds
[CLS] ... [SEP] for a BERT and nothing for a GPT; the BPE chunk pattern agrees with Python's on
every code point Python's Unicode tables assign (and the one gap is where docs/weights.md says);
and pipeline("fill-mask") and pipeline("text-generation") on exported tiny trained runs predict
what our fill-mask and greedy generate do.
"""

import json
import unicodedata

import numpy as np
import pytest
from hf_reference import import_transformers, pretrain_tiny

from numpretrain.app import cli, probing
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.data.builtin.probes import fill_mask_probes, probes
from numpretrain.errors import CheckpointError, ConfigError
from numpretrain.storage.hf_tokenizers import ONIG_PATTERN, hf_tokenizer_json, read_hf_tokenizer, write_hf_tokenizer
from numpretrain.storage.runs import load_pretrained
from numpretrain.tokenizers import BPETokenizer, CharTokenizer
from numpretrain.tokenizers.bpe import BYTE_OFFSET, PRETOKENIZE_PATTERN

TEXT = corpus_text(generate_documents(200, seed=0))
MIXED = ["今天天气很好。 Hello, World! It's 2024: 3.14 + 42 = 45.14",
         "emoji 😀🎉👍🏽 and CJK 北京大学 中文。日本語のテキスト 한국어",
         "  two spaces,\ttab\nnew line\r\nwindows line\n\n\nblank lines  ",
         "[MASK]医生[SEP]x[PAD][CLS]y[UNK][mask]",
         "they're we've I'll ²³ ½ Ⅻ __init__ naïve café ÜBER 1,000,000",
         "no\u00a0break\u3000ideographic space\x1cseparator\x85next line",
         "", " ", "\n"]


def tokenizers():
    return {"char": CharTokenizer.train(TEXT), "bpe": BPETokenizer.train(TEXT + " ".join(MIXED), 700)}


TOKENIZERS = tokenizers()
SAMPLES = MIXED + [p.prompt for p in probes() + fill_mask_probes()] + [p.filled(p.expected[0]) for p in probes()]


def export(folder, tokenizer, model_type):
    write_hf_tokenizer(folder, tokenizer, {"model_type": model_type, "n_positions": 64, "max_position_embeddings": 64})
    return folder


# ---- without extras -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_files_read_back_as_the_same_tokenizer(tmp_path, kind):
    tokenizer = TOKENIZERS[kind]
    export(tmp_path, tokenizer, "gpt2")
    assert read_hf_tokenizer(tmp_path).to_dict() == tokenizer.to_dict()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["mask_token"] == "[MASK]" and config["model_input_names"] == ["input_ids", "attention_mask"]
    assert json.loads((tmp_path / "special_tokens_map.json").read_text())["pad_token"] == "[PAD]"


def test_a_bpe_whose_tokens_spell_the_same_bytes_is_refused():
    a, b, c = (BYTE_OFFSET + ord(ch) for ch in "abc")
    # 261 = ab, 262 = abc (ab + c), 263 = bc, 264 = abc again (a + bc)
    twice = BPETokenizer([(a, b), (261, c), (b, c), (a, 263)])
    with pytest.raises(ConfigError, match="tokens 262 and 264 .* same bytes b'abc'"):
        hf_tokenizer_json(twice, "gpt2")


def test_a_tokenizer_json_that_is_not_ours_is_refused(tmp_path):
    ours = hf_tokenizer_json(TOKENIZERS["bpe"], "gpt2")
    gpt2_style = {**ours, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                            "use_regex": True}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(gpt2_style))
    with pytest.raises(CheckpointError, match="pre-tokenizer is not numpretrain's"):
        read_hf_tokenizer(tmp_path)
    words = {**hf_tokenizer_json(TOKENIZERS["char"], "bert"), "pre_tokenizer": {"type": "WhitespaceSplit"}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(words))
    with pytest.raises(CheckpointError, match="does not cut the text into characters"):
        read_hf_tokenizer(tmp_path)
    shifted = hf_tokenizer_json(TOKENIZERS["char"], "bert")
    shifted["added_tokens"][0]["id"] = 7
    (tmp_path / "tokenizer.json").write_text(json.dumps(shifted))
    with pytest.raises(CheckpointError, match="not a numpretrain tokenizer"):
        read_hf_tokenizer(tmp_path)


# ---- against transformers' tokenizer ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_autotokenizer_gives_our_ids_and_decodes_as_we_do(tmp_path, kind):
    _, transformers = import_transformers()
    tokenizer = TOKENIZERS[kind]
    theirs = transformers.AutoTokenizer.from_pretrained(export(tmp_path, tokenizer, "gpt2"))
    for text in SAMPLES:
        ids = tokenizer.encode(text)
        assert theirs(text)["input_ids"] == ids, text                    # a GPT's: nothing added
        assert theirs.decode(ids) == tokenizer.decode(ids), text
    assert "token_type_ids" not in theirs("今天")                         # GPT-2 would look them up in wte
    assert theirs.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_a_bert_tokenizer_adds_cls_and_sep_as_we_do(tmp_path, kind):
    _, transformers = import_transformers()
    tokenizer = TOKENIZERS[kind]
    theirs = transformers.AutoTokenizer.from_pretrained(export(tmp_path, tokenizer, "bert"))
    a, b = "我昨天去了[MASK][MASK]大学。", "Then 2 emoji 😀!"
    assert theirs(a)["input_ids"] == probing.encode_masked(tokenizer, a)
    pair = theirs(a, b)
    n_a = len(tokenizer.encode(a)) + 2
    assert pair["input_ids"] == [2, *tokenizer.encode(a), 3, *tokenizer.encode(b), 3]
    assert pair["token_type_ids"] == [0] * n_a + [1] * (len(pair["input_ids"]) - n_a)


def test_the_chunk_pattern_agrees_with_pythons_on_every_assigned_code_point():
    tokenizers_library = pytest.importorskip("tokenizers")
    split = tokenizers_library.pre_tokenizers.Split(tokenizers_library.Regex(ONIG_PATTERN), "isolated")
    assigned = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF
                and unicodedata.category(chr(cp)) != "Cn"]
    # shuffled, so that every kind of character stands next to every other kind
    text = "".join(np.random.default_rng(0).permutation(assigned))
    assert [piece for piece, _ in split.pre_tokenize_str(text)] == PRETOKENIZE_PATTERN.findall(text)
    # the gap (docs/weights.md): a letter Python's tables do not know yet, U+1E4D0 (Nag Mundari, Unicode 15)
    if unicodedata.category("\U0001e4d0") == "Cn":
        assert PRETOKENIZE_PATTERN.findall("a\U0001e4d0b") == ["a", "\U0001e4d0", "b"]
        assert [piece for piece, _ in split.pre_tokenize_str("a\U0001e4d0b")] == ["a\U0001e4d0b"]


# ---- the pipelines, on exported tiny trained runs ------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import_transformers()                         # without it, no run is trained for nothing
    base = tmp_path_factory.mktemp("hf_tokenizers")
    # long enough that greedy continuations and fillers differ from prompt to prompt (a few seconds each)
    longer = ["--n-embd", "32", "--max-iters", "100", "--lr", "1e-2", "--eval-interval", "100", "--log-interval", "100"]
    pretrain_tiny(base / "gpt", "pretrain-gpt", *longer)
    pretrain_tiny(base / "gpt-bpe", "pretrain-gpt", "--tokenizer", "bpe", "--vocab-size", "320")
    pretrain_tiny(base / "bert", "pretrain-bert", *longer, "--no-nsp")
    for run in ("gpt", "gpt-bpe", "bert"):
        assert cli.main(["export-hf", "--ckpt", str(base / run), "--out", str(base / f"{run}-hf")]) == 0
    return base


@pytest.mark.parametrize("run", ["gpt", "gpt-bpe"])
def test_the_text_generation_pipeline_continues_as_our_greedy_generate(exported, run):
    _, transformers = import_transformers()
    model, tokenizer, _ = load_pretrained(str(exported / run))
    generate = transformers.pipeline("text-generation", model=str(exported / f"{run}-hf"), device="cpu")
    for prompt in ("今天天气很", "我昨天去了", "Hello 2024"):
        ids = tokenizer.encode(prompt)                 # the char GPT reads "Hello 2024" as [UNK]s
        new_ids = model.generate(np.asarray([ids]), 12, greedy=True)[0, len(ids):]
        theirs = generate(prompt, max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
        assert theirs == tokenizer.decode([int(t) for t in new_ids]), prompt


def test_the_fill_mask_pipeline_predicts_what_our_fill_mask_does(exported):
    _, transformers = import_transformers()
    model, tokenizer, _ = load_pretrained(str(exported / "bert"))
    fill = transformers.pipeline("fill-mask", model=str(exported / "bert-hf"), device="cpu")
    texts = [p.prompt for p in fill_mask_probes()] + ["我昨天去了[MASK]京大学。", "今天天气很[MASK]。"]
    assert len(texts) > 4
    for text in texts:
        candidates, _ = probing.fill_mask(model, tokenizer, text, top_k=1, warn=lambda *_: None)
        ours = [top[0][0] for top in candidates.values()]             # each [MASK]'s best filler, in order
        theirs = fill(text, top_k=1)                                   # one list per [MASK] when there are several
        theirs = [t[0]["token_str"] for t in theirs] if len(ours) > 1 else [theirs[0]["token_str"]]
        assert theirs == ours, text
