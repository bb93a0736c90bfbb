"""Data builders: text files, causal-LM windows, BERT masking, NSP pairs, the
pretraining batcher, and classification files and batches.

Each is tested by its defining property: masking statistics within
tolerance, NSP negatives traced back to their documents, windows checked
token by token, files round tripped and their bad rows located."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpretrain.data import (
    IGNORE_INDEX,
    IS_NEXT,
    NOT_NEXT,
    CausalLMDataset,
    LabelledExample,
    LabelVocabulary,
    PretrainingBatcher,
    create_pair_examples,
    create_single_examples,
    encode_documents,
    encode_for_bert,
    encode_for_gpt,
    load_labelled_file,
    mask_tokens,
    read_text_file,
    save_labelled_file,
    split_documents,
    truncate_seq_pair,
)
from numpretrain.data.mlm import count_to_predict
from numpretrain.errors import CheckpointError, ConfigError, DataError
from numpretrain.tokenizers import CLS_ID, MASK_ID, PAD_ID, SEP_ID, BPETokenizer, CharTokenizer

FIRST = 5  # first ordinary token id (after [PAD] [UNK] [CLS] [SEP] [MASK])


# ---- text files -----------------------------------------------------------------------


def test_read_text_file_normalises_line_endings_and_bom(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeff第一行\r\n第二行\rthird\n".encode("utf-8"))
    assert read_text_file(path) == "第一行\n第二行\nthird\n"


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "no such file"),
        ("dir", "is a directory"),
        (b"hello \xe4\xb8 world", "not valid UTF-8 at byte 6"),
        (b"", "empty"),
        (b" \n\t\n  ", "only whitespace"),
    ],
)
def test_bad_text_files_raise_data_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "corpus.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_text_file(path)
    assert "corpus.txt" in str(err.value)
    assert problem in str(err.value)


def test_split_documents():
    text = "第一句。第二句！\n第三句\n\n  \nOne. Two? Pi is 3.14 here.\n\n\n\n他说：“好。”然后走了。"
    assert split_documents(text) == [
        ["第一句。", "第二句！", "第三句"],
        ["One.", "Two?", "Pi is 3.14 here."],
        ["他说：“好。”", "然后走了。"],
    ]
    assert split_documents("\n\n \n") == []


# ---- causal LM windows -------------------------------------------------------------------


def test_lm_windows_are_shifted_by_one_and_come_from_their_split():
    data = CausalLMDataset(np.arange(1000), val_fraction=0.1)
    assert len(data.train_tokens) == 900 and len(data.val_tokens) == 100
    x, y = data.get_batch(np.random.default_rng(0), batch_size=64, block_size=16)
    assert x.shape == y.shape == (64, 16) and x.dtype == y.dtype == np.int64
    assert np.array_equal(y, x + 1)  # y[t] is the token after x[t] (tokens are 0, 1, 2, ...)
    assert np.array_equal(np.diff(x, axis=1), np.ones((64, 15)))  # contiguous windows
    assert x.min() >= 0 and y.max() < 900  # train windows stay in the train split
    xv, yv = data.get_batch(np.random.default_rng(0), batch_size=64, block_size=16, split="val")
    assert xv.min() >= 900 and yv.max() < 1000


def test_lm_every_start_is_reachable():
    data = CausalLMDataset(np.arange(20), val_fraction=0.0)
    x, _ = data.get_batch(np.random.default_rng(1), batch_size=2000, block_size=9)
    assert set(x[:, 0]) == set(range(0, 20 - 9))  # starts 0 .. len - (T + 1)


def test_lm_same_seed_same_batches_and_fixed_validation():
    data = CausalLMDataset(np.random.default_rng(5).integers(0, 50, size=3000))
    a = data.get_batch(np.random.default_rng(7), 8, 32)
    b = data.get_batch(np.random.default_rng(7), 8, 32)
    c = data.get_batch(np.random.default_rng(8), 8, 32)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    v1 = data.fixed_validation_batches(3, 4, 16, seed=0)
    v2 = data.fixed_validation_batches(3, 4, 16, seed=0)
    assert len(v1) == 3
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(v1, v2))


def test_lm_corpus_shorter_than_one_block():
    data = CausalLMDataset(np.arange(100), val_fraction=0.1, source="tiny.txt")
    with pytest.raises(DataError, match=r"tiny.txt: the train split has 90 tokens, fewer than one block of block_size \+ 1 = 91"):
        data.get_batch(np.random.default_rng(0), 2, 90)
    with pytest.raises(DataError, match="tiny.txt: the val split has 10 tokens"):
        data.fixed_validation_batches(1, 2, 10)
    data.get_batch(np.random.default_rng(0), 2, 89)  # exactly one window fits


@pytest.mark.parametrize(
    "tokens, kwargs, problem",
    [
        (np.array([], dtype=np.int64), {}, "empty"),
        (np.zeros((2, 3), dtype=np.int64), {}, "1-D"),
        (np.array([0.5, 1.5]), {}, "integers"),
        (np.array([1, 2, 99]), {"vocab_size": 50}, "token id 99 is out of range"),
    ],
)
def test_lm_bad_token_arrays(tokens, kwargs, problem):
    with pytest.raises(DataError, match=problem):
        CausalLMDataset(tokens, source="corpus.txt", **kwargs)


# ---- masked LM ----------------------------------------------------------------------------


def _padded_sequences(rng, batch_size, max_len, vocab_size):
    """[CLS] text [SEP] text [SEP] [PAD]... rows of random lengths; returns ids (B, T)."""
    ids = rng.integers(FIRST, vocab_size, size=(batch_size, max_len))
    lengths = rng.integers(6, max_len + 1, size=batch_size)
    positions = np.arange(max_len)[None, :]
    ids[:, 0] = CLS_ID
    sep_mid = rng.integers(2, lengths - 2)
    ids[positions == sep_mid[:, None]] = SEP_ID
    ids[positions == (lengths - 1)[:, None]] = SEP_ID
    ids[positions >= lengths[:, None]] = PAD_ID
    return ids


def test_masking_statistics():
    rng = np.random.default_rng(0)
    vocab_size = 1000
    ids = _padded_sequences(rng, 4000, 64, vocab_size)
    masked, labels = mask_tokens(ids, rng, vocab_size=vocab_size, mask_id=MASK_ID, max_predictions=20)
    chosen = labels != IGNORE_INDEX
    eligible = ids >= FIRST

    assert not (chosen & ~eligible).any()  # special tokens and padding never chosen
    assert np.array_equal(labels[chosen], ids[chosen])  # labels are the original tokens
    assert np.array_equal(masked[~chosen], ids[~chosen])  # nothing else is touched
    # Per row exactly round(15% of the ordinary tokens), at least 1, at most max_predictions.
    n_eligible = eligible.sum(axis=1)
    expected = np.clip(np.rint(0.15 * n_eligible), 1, 20)
    assert np.array_equal(chosen.sum(axis=1), expected)
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01

    n = chosen.sum()
    as_mask = (masked == MASK_ID) & chosen
    unchanged = (masked == ids) & chosen
    as_random = chosen & ~as_mask & ~unchanged
    assert abs(as_mask.sum() / n - 0.8) < 0.015
    # A random replacement equals the original with probability 1/995: count those as unchanged.
    assert abs(unchanged.sum() / n - (0.1 + 0.1 / (vocab_size - FIRST))) < 0.01
    assert abs(as_random.sum() / n - 0.1) < 0.01
    assert masked[as_random].min() >= FIRST and masked[as_random].max() < vocab_size


def test_masking_respects_max_predictions_and_mask_prob():
    rng = np.random.default_rng(1)
    ids = rng.integers(FIRST, 100, size=(50, 200))
    _, labels = mask_tokens(ids, rng, vocab_size=100, mask_id=MASK_ID, max_predictions=20)
    assert ((labels != IGNORE_INDEX).sum(axis=1) == 20).all()  # 15% of 200 = 30, capped at 20
    _, labels = mask_tokens(ids, rng, vocab_size=100, mask_id=MASK_ID, mask_prob=0.3, max_predictions=100)
    assert ((labels != IGNORE_INDEX).sum(axis=1) == 60).all()


def test_masking_short_and_empty_rows():
    assert list(count_to_predict(np.array([0, 1, 3, 10, 200]), 0.15, 20)) == [0, 1, 1, 2, 20]
    ids = np.array([[CLS_ID, 7, SEP_ID, PAD_ID], [CLS_ID, SEP_ID, PAD_ID, PAD_ID]])
    _, labels = mask_tokens(ids, np.random.default_rng(0), vocab_size=10, mask_id=MASK_ID)
    assert list(labels[0]) == [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX]  # at least one chosen
    assert (labels[1] == IGNORE_INDEX).all()  # nothing eligible, nothing chosen
    # An explicit special_mask replaces the "id < first_non_special_id" rule.
    ids = np.full((200, 10), 7)
    special = np.zeros((200, 10), dtype=bool)
    special[:, :5] = True
    _, labels = mask_tokens(ids, np.random.default_rng(0), vocab_size=10, mask_id=MASK_ID, special_mask=special)
    assert (labels[:, :5] == IGNORE_INDEX).all() and (labels[:, 5:] != IGNORE_INDEX).sum(axis=1).min() == 1


def test_masking_same_seed_same_result():
    ids = _padded_sequences(np.random.default_rng(3), 16, 32, 300)
    a = mask_tokens(ids, np.random.default_rng(9), vocab_size=300, mask_id=MASK_ID)
    b = mask_tokens(ids, np.random.default_rng(9), vocab_size=300, mask_id=MASK_ID)
    c = mask_tokens(ids, np.random.default_rng(10), vocab_size=300, mask_id=MASK_ID)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_masking_rejects_bad_input():
    with pytest.raises(DataError, match="out of range"):
        mask_tokens(np.array([[5, 300]]), np.random.default_rng(0), vocab_size=300, mask_id=MASK_ID)
    with pytest.raises(ConfigError, match="mask_prob"):
        mask_tokens(np.array([[5, 6]]), np.random.default_rng(0), vocab_size=300, mask_id=MASK_ID, mask_prob=0)


def test_whole_word_masking_masks_whole_words():
    rng = np.random.default_rng(4)
    ids = _padded_sequences(rng, 500, 48, 500)
    word_starts = rng.random(ids.shape) < 0.4  # words of 1 to several tokens
    masked, labels = mask_tokens(ids, rng, vocab_size=500, mask_id=MASK_ID, word_starts=word_starts)
    chosen = labels != IGNORE_INDEX
    eligible = ids >= FIRST
    assert not (chosen & ~eligible).any()
    expected = np.clip(np.rint(0.15 * eligible.sum(axis=1)), 1, 20)
    assert (chosen.sum(axis=1) <= expected).all()
    assert chosen.sum() > 0.9 * expected.sum()  # short words fill up the budget
    # A word is an eligible start token and the following eligible non-start tokens: all or nothing.
    n_words_checked = 0
    for b in range(ids.shape[0]):
        word = []
        for t in range(ids.shape[1] + 1):
            ends = t == ids.shape[1] or not eligible[b, t] or word_starts[b, t]
            if ends and word:
                assert len(set(chosen[b, word])) == 1, (b, word)
                n_words_checked += len(word) > 1 and chosen[b, word[0]]
                word = []
            if t < ids.shape[1] and eligible[b, t]:
                word.append(t)
    assert n_words_checked > 100  # multi-token words were chosen, whole


def test_whole_word_masking_with_bpe_word_starts():
    tok = BPETokenizer.train("the cat sat on the mat with another cat " * 20, vocab_size=280)
    text = "the cat sat on another mat with the cat"
    ids = np.array([[tok.cls_id] + tok.encode(text) + [tok.sep_id]] * 200)
    _, labels = mask_tokens(
        ids, np.random.default_rng(0), vocab_size=tok.vocab_size, mask_id=tok.mask_id,
        mask_prob=0.3, word_starts=tok.word_starts,
    )
    starts = tok.word_starts(ids)
    chosen = labels != IGNORE_INDEX
    # A continuation token is chosen exactly when the token before it is.
    continuation = ~starts[:, 1:] & (ids[:, 1:] >= FIRST)
    assert np.array_equal(chosen[:, 1:][continuation], chosen[:, :-1][continuation])
    assert continuation.any()


# ---- next sentence prediction --------------------------------------------------------------

# Documents whose token ids encode where they come from: token id =
# FIRST + 1000 * document + position in the document's token stream.


def _traceable_documents(rng, n_docs=40):
    documents = []
    for d in range(n_docs):
        position = 0
        sentences = []
        for _ in range(rng.integers(1, 8)):
            length = int(rng.integers(2, 15))
            sentences.append(list(range(FIRST + 1000 * d + position, FIRST + 1000 * d + position + length)))
            position += length
        documents.append(sentences)
    return documents


def _origin(token_ids):
    token_ids = np.asarray(token_ids) - FIRST
    return token_ids // 1000, token_ids % 1000  # document, position


def _split_pair(example):
    ids, segments = example.input_ids, example.token_type_ids
    assert ids[0] == CLS_ID and ids[-1] == SEP_ID
    n_a = segments.count(0) - 2
    assert segments == [0] * (n_a + 2) + [1] * (len(ids) - n_a - 2)  # segment ids: [CLS] A [SEP] | B [SEP]
    assert ids[n_a + 1] == SEP_ID
    return ids[1 : n_a + 1], ids[n_a + 2 : -1]


def test_nsp_pairs_are_balanced_and_negatives_come_from_other_documents():
    rng = np.random.default_rng(0)
    documents = _traceable_documents(rng)
    labels = []
    for _ in range(60):
        for d in range(len(documents)):
            if len(documents[d]) == 1:  # no true next sentence: always NotNext (the batcher skips these)
                example, = create_pair_examples(documents, d, 32, rng, cls_id=CLS_ID, sep_id=SEP_ID)
                assert example.next_sentence_label == NOT_NEXT
                continue
            for example in create_pair_examples(documents, d, 32, rng, cls_id=CLS_ID, sep_id=SEP_ID):
                assert len(example.input_ids) <= 32
                tokens_a, tokens_b = _split_pair(example)
                assert tokens_a and tokens_b
                doc_a, pos_a = _origin(tokens_a)
                doc_b, pos_b = _origin(tokens_b)
                assert (doc_a == d).all() and (np.diff(pos_a) == 1).all()  # A: contiguous text of this document
                assert len(set(doc_b)) == 1 and (np.diff(pos_b) == 1).all()  # B: contiguous text of one document
                if example.next_sentence_label == IS_NEXT:
                    assert doc_b[0] == d and pos_b[0] > pos_a[-1]  # B follows A in the same document
                else:
                    assert example.next_sentence_label == NOT_NEXT
                    assert doc_b[0] != d  # B comes from another document
                labels.append(example.next_sentence_label)
    assert len(labels) > 4000
    assert abs(np.mean(labels) - 0.5) < 0.02


def test_nsp_needs_two_documents():
    with pytest.raises(DataError, match="at least 2 documents"):
        create_pair_examples([[[5, 6], [7, 8]]], 0, 16, np.random.default_rng(0), cls_id=CLS_ID, sep_id=SEP_ID)


@settings(max_examples=200)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(2, 40), st.integers(0, 2**32 - 1))
def test_truncate_seq_pair(len_a, len_b, max_num_tokens, seed):
    tokens_a, tokens_b = list(range(len_a)), list(range(100, 100 + len_b))
    truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, np.random.default_rng(seed))
    assert len(tokens_a) + len(tokens_b) == min(len_a + len_b, max_num_tokens)
    # Tokens go only from the ends: what is left is a contiguous slice.
    for kept in (tokens_a, tokens_b):
        assert kept == list(range(kept[0], kept[0] + len(kept))) if kept else True
    # Always from the longer side (B on a tie): the shorter side is cut only once the
    # longer is down to its length, so the lengths are fixed by (len_a, len_b, max).
    if len_a + len_b > max_num_tokens:
        shorter = min(len_a, len_b)
        if shorter <= max_num_tokens - shorter:
            expected = (shorter, max_num_tokens - shorter) if len_a <= len_b else (max_num_tokens - shorter, shorter)
        else:
            expected = ((max_num_tokens + 1) // 2, max_num_tokens // 2)
        assert (len(tokens_a), len(tokens_b)) == expected


def test_truncate_seq_pair_cuts_both_front_and_back():
    rng = np.random.default_rng(0)
    fronts, backs = 0, 0
    for _ in range(200):
        tokens_a, tokens_b = list(range(20)), [100, 101]
        truncate_seq_pair(tokens_a, tokens_b, 12, rng)
        fronts += tokens_a[0] > 0
        backs += tokens_a[-1] < 19
    assert fronts > 150 and backs > 150


def test_single_segment_examples():
    rng = np.random.default_rng(2)
    documents = _traceable_documents(rng, 5)
    for d, document in enumerate(documents):
        for example in create_single_examples(document, 20, rng, cls_id=CLS_ID, sep_id=SEP_ID):
            ids = example.input_ids
            assert ids[0] == CLS_ID and ids[-1] == SEP_ID and len(ids) <= 20
            assert example.token_type_ids == [0] * len(ids)
            assert example.next_sentence_label is None
            doc, pos = _origin(ids[1:-1])
            assert (doc == d).all() and (np.diff(pos) == 1).all()


# ---- the pretraining batcher -----------------------------------------------------------------


@pytest.fixture(scope="module")
def traceable_batcher():
    documents = _traceable_documents(np.random.default_rng(1), 60)
    return PretrainingBatcher(documents, vocab_size=FIRST + 1000 * 60, max_seq_length=40, val_fraction=0.25)


def test_batcher_batches(traceable_batcher):
    batch = traceable_batcher.get_batch(np.random.default_rng(0), 512)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "mlm_labels", "nsp_labels"}
    for key in ("input_ids", "token_type_ids", "attention_mask", "mlm_labels"):
        assert batch[key].shape == (512, 40)
    assert batch["attention_mask"].dtype == bool and batch["nsp_labels"].shape == (512,)
    ids, real = batch["input_ids"], batch["attention_mask"]
    assert (ids[~real] == PAD_ID).all() and (ids[real] != PAD_ID).all()
    assert (batch["token_type_ids"][~real] == 0).all()
    chosen = batch["mlm_labels"] != IGNORE_INDEX
    assert (chosen <= real).all() and (batch["mlm_labels"][chosen] >= FIRST).all()
    assert (ids[:, 0] == CLS_ID).all()
    assert abs(batch["nsp_labels"].mean() - 0.5) < 0.08
    # Unmasked tokens still trace back: train batches use only the first 45 documents.
    doc, _ = _origin(np.where(chosen | (ids < FIRST), FIRST, ids))
    assert doc.max() < 45


def test_batcher_same_seed_same_batches_and_fixed_validation(traceable_batcher):
    a = traceable_batcher.get_batch(np.random.default_rng(3), 8)
    b = traceable_batcher.get_batch(np.random.default_rng(3), 8)
    c = traceable_batcher.get_batch(np.random.default_rng(4), 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], c["input_ids"])
    v1 = traceable_batcher.fixed_validation_batches(2, 16, seed=0)
    v2 = traceable_batcher.fixed_validation_batches(2, 16, seed=0)
    assert all(np.array_equal(p[k], q[k]) for p, q in zip(v1, v2) for k in p)
    ids = v1[0]["input_ids"]
    unmasked = (ids >= FIRST) & (v1[0]["mlm_labels"] == IGNORE_INDEX)
    doc, _ = _origin(ids[unmasked])
    assert doc.min() >= 45  # validation batches come from the held-out documents


def test_batcher_mlm_only_from_text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("我昨天去了北京大学参观。天气很好。\n\n医生拿起了听诊器。\n\n今天天气很热。我带了太阳镜。\n", encoding="utf-8")
    documents = split_documents(read_text_file(path))
    tok = CharTokenizer.train(read_text_file(path))
    batcher = PretrainingBatcher.from_tokenizer(documents, tok, max_seq_length=16, next_sentence=False, val_fraction=0.0)
    batch = batcher.get_batch(np.random.default_rng(0), 6)
    assert "nsp_labels" not in batch
    assert (batch["token_type_ids"] == 0).all()
    assert batch["input_ids"].shape == (6, 16)
    with pytest.raises(DataError, match="val split has no documents"):
        batcher.fixed_validation_batches(1, 2)
    with pytest.raises(DataError, match="at least 2"):
        PretrainingBatcher.from_tokenizer(documents[:1], tok, max_seq_length=16, val_fraction=0.0)
    with pytest.raises(DataError, match="corpus is empty"):
        PretrainingBatcher.from_tokenizer([[""], []], tok)


def test_encode_documents_drops_empty_sentences():
    tok = CharTokenizer.train("abc")
    assert encode_documents([["ab", ""], [""], ["c"]], tok) == [[tok.encode("ab")], [tok.encode("c")]]


# ---- classification ---------------------------------------------------------------------------

TSV_SAFE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), min_size=1).filter(str.strip)
ANY_SAFE = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(str.strip)
LABEL = st.sampled_from(["pos", "neg", "中性", "3"])


@settings(max_examples=50)
@given(st.lists(st.tuples(TSV_SAFE, LABEL), min_size=1, max_size=5), st.booleans())
def test_tsv_round_trip(tmp_path_factory, rows, as_pairs):
    path = tmp_path_factory.mktemp("tsv") / "set.tsv"
    examples = [LabelledExample((t, t[::-1]) if as_pairs else t, label) for t, label in rows]
    save_labelled_file(path, examples)
    assert load_labelled_file(path) == examples


@settings(max_examples=50)
@given(st.lists(st.tuples(ANY_SAFE, LABEL), min_size=1, max_size=5), st.booleans())
def test_jsonl_round_trip(tmp_path_factory, rows, as_pairs):
    path = tmp_path_factory.mktemp("jsonl") / "set.jsonl"
    examples = [LabelledExample((t, t[::-1]) if as_pairs else t, label) for t, label in rows]
    save_labelled_file(path, examples)
    assert load_labelled_file(path) == examples


def test_tsv_cannot_hold_tabs(tmp_path):
    with pytest.raises(DataError, match="use .jsonl"):
        save_labelled_file(tmp_path / "x.tsv", [("a\tb", "pos")])


def test_malformed_tsv_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("text\tlabel\n很好吃\tpos\n只有文本\n\n\tneg\n还行\tneutral\n太难吃\t \na\tb\tc\td\n很脏\tneg\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_labelled_file(path, labels={"pos", "neg"})
    message = str(err.value)
    assert "reviews.tsv" in message and "5 malformed row(s)" in message
    assert "line 3: missing label" in message
    assert "line 5: empty text" in message
    assert "line 6: unknown label 'neutral'" in message
    assert "line 7: missing label" in message
    assert "line 8: 4 tab-separated fields" in message
    assert "line 2" not in message and "line 9" not in message
    # Without the bad rows the same file loads.
    lines = path.read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join([lines[0], lines[1], lines[8]]) + "\n", encoding="utf-8")
    assert load_labelled_file(path, labels={"pos", "neg"}) == [("很好吃", "pos"), ("很脏", "neg")]


def test_malformed_jsonl_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [
        json.dumps({"text": "很好吃", "label": "pos"}, ensure_ascii=False),
        "{bad json",
        json.dumps({"text": "没有标签"}, ensure_ascii=False),
        json.dumps({"text": "", "label": "neg"}),
        json.dumps(["text", "label"]),
        json.dumps({"label": "pos"}),
        json.dumps({"text": "a", "text_b": 3, "label": "pos"}),
        json.dumps({"text": "a", "label": ["pos"]}),
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_labelled_file(path)
    message = str(err.value)
    assert "reviews.jsonl" in message and "7 malformed row(s)" in message
    for line, problem in [(2, "bad JSON"), (3, "missing label"), (4, "empty text"), (5, "expected a JSON object"),
                          (6, 'missing "text"'), (7, '"text_b" must be a string'), (8, "label must be a string")]:
        assert f"line {line}: {problem}" in message
    assert "line 1:" not in message


def test_label_files_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_labelled_file(tmp_path / "missing.tsv")
    header_only = tmp_path / "h.tsv"
    header_only.write_text("text\tlabel\n", encoding="utf-8")
    with pytest.raises(DataError, match="h.tsv: no examples"):
        load_labelled_file(header_only)
    latin1 = tmp_path / "l.tsv"
    latin1.write_bytes("caf\xe9\tpos\n".encode("latin-1"))
    with pytest.raises(DataError, match="l.tsv: not valid UTF-8 at byte 3"):
        load_labelled_file(latin1)


def test_label_vocabulary():
    vocab = LabelVocabulary.from_examples([LabelledExample("a", "pos"), ("b", "neg"), ("c", "pos")])
    assert vocab.labels == ["neg", "pos"] and len(vocab) == 2
    assert list(vocab.encode(["pos", "neg"])) == [1, 0]
    assert vocab.decode([0, 1]) == ["neg", "pos"]
    with pytest.raises(DataError, match="unknown label 'meh'"):
        vocab.encode(["meh"])
    assert LabelVocabulary.from_list(vocab.to_list()).labels == vocab.labels
    with pytest.raises(CheckpointError, match="sorted and distinct"):
        LabelVocabulary.from_list(["pos", "neg"])


@pytest.fixture(scope="module")
def review_tok():
    return CharTokenizer.train("这家餐厅的菜很好吃服务热情环境肮脏再也不来了")


def test_encode_for_bert(review_tok):
    tok = review_tok
    data = encode_for_bert(["很好吃", ("服务热情", "环境肮脏再也不来了"), "这家餐厅的菜很好吃"], tok, 10, label_ids=[1, 0, 1])
    assert data["input_ids"].shape == data["token_type_ids"].shape == data["attention_mask"].shape == (3, 10)
    assert tok.decode(data["input_ids"][0]) == "[CLS]很好吃[SEP]" + "[PAD]" * 5
    assert list(data["attention_mask"][0]) == [True] * 5 + [False] * 5
    # Pair of 4 + 9 tokens cut to 7: B loses 5 from its back (longer side), then 1 more (B on a tie).
    assert tok.decode(data["input_ids"][1]) == "[CLS]服务热情[SEP]环境肮[SEP]"
    assert list(data["token_type_ids"][1]) == [0] * 6 + [1] * 4
    assert tok.decode(data["input_ids"][2]) == "[CLS]这家餐厅的菜很好[SEP]"  # cut from the end
    assert list(data["labels"]) == [1, 0, 1]
    assert list(data["last_index"]) == [4, 9, 9]


def test_encode_for_gpt(review_tok):
    tok = review_tok
    data = encode_for_gpt(["很好吃", ("服务", "环境")], tok, 6)
    assert tok.decode(data["input_ids"][0]) == "很好吃" + "[PAD]" * 3
    assert tok.decode(data["input_ids"][1]) == "服务[SEP]环境[PAD]"
    assert list(data["last_index"]) == [2, 4]
    assert tok.decode([data["input_ids"][1, data["last_index"][1]]]) == "境"
    assert "labels" not in data
    with pytest.raises(DataError, match="encodes to no tokens"):
        encode_for_gpt([""], tok, 6)


def test_ignore_index_agrees_with_the_loss():
    from numpretrain import functional  # the loss skips exactly the labels the builders leave unset

    assert functional.IGNORE_INDEX == IGNORE_INDEX
