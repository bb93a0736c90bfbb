"""BERT pretraining sequences: sentence pairs for next-sentence prediction, and
single segments for the MLM-only recipe; and the batcher that masks them.

Sentence pairs follow create_instances_from_document in google-research/bert's
create_pretraining_data.py. Walking through a document, consecutive sentences
are gathered until they reach a target length (the maximum, or with
probability `short_seq_prob` a random shorter one, so the model also sees
short inputs). The gathered chunk is cut at a random sentence boundary: A is
the first part; B is the rest of the chunk (IsNext) or, with probability 1/2,
text from a random position of another document (NotNext). The pair is
truncated to fit and laid out as

    [CLS] A [SEP] B [SEP]     token_type_ids 0 for [CLS] A [SEP], 1 for B [SEP]

Labels follow Hugging Face's BERT: 0 = IsNext, 1 = NotNext.

Two deliberate departures from the reference, both to make the task exactly
what the paper says (B is the true next text half of the time, text from
ANOTHER document otherwise):
  * the reference forces NotNext whenever the chunk holds one sentence, which
    tilts the labels towards NotNext; here the coin is always tossed, and an
    IsNext chunk of one sentence borrows the next sentence of the document (or
    the previous one, at the document's end) so that it can be cut in two;
  * the reference draws the "random" document up to ten times and may still
    get the same one; here it is drawn from the other documents only.
A document of a single sentence has no true successor, so the batcher never
picks it for A (it still supplies NotNext segments). The batcher also does not
walk whole documents: it takes single steps of the walk from random sentences
(see PretrainingBatcher for why).
"""

from dataclasses import dataclass

import numpy as np

from numpretrain.data.mlm import MASK_PROB, MAX_PREDICTIONS_PER_SEQ, check_masking, mask_tokens
from numpretrain.errors import ConfigError, DataError
from numpretrain.tokenizers.special_tokens import CLS_ID, FIRST_NON_SPECIAL_ID, MASK_ID, PAD_ID, SEP_ID

IS_NEXT = 0  # Hugging Face BertForPreTraining: label 0 means B continues A
NOT_NEXT = 1  # label 1 means B is from another document
NOT_NEXT_PROB = 0.5  # BERT paper, section 3.1 "Task #2": 50% of the time B is random
SHORT_SEQ_PROB = 0.1  # create_pretraining_data.py's --short_seq_prob default
VAL_FRACTION = 0.1  # share of documents held out for validation (the last ones)


@dataclass
class PretrainingExample:
    """One unpadded sequence: `[CLS] A [SEP] B [SEP]` (or `[CLS] text [SEP]`) and its segment ids."""

    input_ids: list
    token_type_ids: list
    next_sentence_label: int = None  # IS_NEXT / NOT_NEXT for a pair, None for a single segment


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Shorten two token lists in place until together they hold at most `max_num_tokens`.

    As the reference: always cut the longer list (B on a tie), one token at a
    time, from its front or its back at random, so that no side of the text is
    systematically lost.
    """
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def draw_target_length(max_num_tokens, rng, short_seq_prob):
    """The reference's target length: the maximum, or with probability short_seq_prob a random 2..max."""
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_num_tokens + 1))
    return max_num_tokens


def pair_example(tokens_a, tokens_b, label, cls_id, sep_id):
    input_ids = [cls_id] + tokens_a + [sep_id] + tokens_b + [sep_id]
    token_type_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    return PretrainingExample(input_ids, token_type_ids, label)


def create_pair_example(documents, doc_index, start, target_seq_length, max_seq_length, rng, *, cls_id, sep_id):
    """One sentence-pair example whose A begins at sentence `start` of `documents[doc_index]`.

    One step of the reference walk: gather sentences from `start` until
    `target_seq_length` tokens or the document's end, cut at a random sentence
    boundary, toss the IsNext / NotNext coin, truncate.
    Returns (example, next_start): the sentence where the walk continues
    (NotNext leaves the chunk's unused sentences to be read again, as the reference).
    """
    document = documents[doc_index]
    max_num_tokens = max_seq_length - 3  # room for [CLS], [SEP], [SEP]
    chunk = []  # indices of the consecutive sentences gathered
    chunk_length = 0
    for i in range(start, len(document)):
        chunk.append(i)
        chunk_length += len(document[i])
        if chunk_length >= target_seq_length:
            break

    is_random_next = rng.random() < NOT_NEXT_PROB
    if not is_random_next and len(chunk) == 1:
        # Departure from the reference (see the module docstring): make room to cut the chunk in two.
        if chunk[0] + 1 < len(document):
            chunk.append(chunk[0] + 1)
        elif chunk[0] >= 1:
            chunk.insert(0, chunk[0] - 1)
        else:
            is_random_next = True  # a one-sentence document has no next sentence

    a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1  # A = chunk[:a_end]
    tokens_a = [t for s in chunk[:a_end] for t in document[s]]
    if is_random_next:
        target_b_length = target_seq_length - len(tokens_a)
        other = int(rng.integers(len(documents) - 1))
        other += other >= doc_index  # any document but this one, uniformly
        random_document = documents[other]
        tokens_b = []
        for sentence in random_document[int(rng.integers(len(random_document))) :]:
            tokens_b.extend(sentence)
            if len(tokens_b) >= target_b_length:
                break
        next_start = chunk[a_end - 1] + 1  # B came from elsewhere: the chunk's rest is read again
    else:
        tokens_b = [t for s in chunk[a_end:] for t in document[s]]
        next_start = chunk[-1] + 1
    truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
    label = NOT_NEXT if is_random_next else IS_NEXT
    return pair_example(tokens_a, tokens_b, label, cls_id, sep_id), next_start


def create_pair_examples(
    documents, doc_index, max_seq_length, rng, *, cls_id, sep_id, short_seq_prob=SHORT_SEQ_PROB
):
    """All sentence-pair examples the reference walk makes from `documents[doc_index]`.

    documents: list of documents, each a list of sentences, each a non-empty list of token ids.
    Returns a list of PretrainingExample with next_sentence_label set.
    """
    _check_pair_inputs(documents, max_seq_length)
    target_seq_length = draw_target_length(max_seq_length - 3, rng, short_seq_prob)  # one per document
    examples = []
    start = 0
    while start < len(documents[doc_index]):
        example, start = create_pair_example(
            documents, doc_index, start, target_seq_length, max_seq_length, rng, cls_id=cls_id, sep_id=sep_id
        )
        examples.append(example)
    return examples


def _check_pair_inputs(documents, max_seq_length):
    if len(documents) < 2:
        raise DataError("next sentence prediction needs at least 2 documents (NotNext text comes from another one)")
    if max_seq_length < 5:
        raise ConfigError(f"max_seq_length must be at least 5 for [CLS] A [SEP] B [SEP], got {max_seq_length}")


def create_single_example(document, start, target_seq_length, max_seq_length, rng, *, cls_id, sep_id):
    """One MLM-only example `[CLS] text [SEP]` (segment 0) from sentences of `document` beginning at `start`.

    Sentences are gathered up to the target length as for pairs; an over-long
    chunk is cut from its front or back at random, like truncate_seq_pair.
    Returns (example, next_start).
    """
    tokens = []
    i = start
    while i < len(document):
        tokens.extend(document[i])
        i += 1
        if len(tokens) >= target_seq_length:
            break
    truncate_seq_pair(tokens, [], max_seq_length - 2, rng)  # room for [CLS] and [SEP]
    return PretrainingExample([cls_id] + tokens + [sep_id], [0] * (len(tokens) + 2)), i


def create_single_examples(document, max_seq_length, rng, *, cls_id, sep_id, short_seq_prob=SHORT_SEQ_PROB):
    """All MLM-only examples of one document, walking it from the start as create_pair_examples does."""
    if max_seq_length < 3:
        raise ConfigError(f"max_seq_length must be at least 3 for [CLS] text [SEP], got {max_seq_length}")
    target_seq_length = draw_target_length(max_seq_length - 2, rng, short_seq_prob)
    examples = []
    start = 0
    while start < len(document):
        example, start = create_single_example(
            document, start, target_seq_length, max_seq_length, rng, cls_id=cls_id, sep_id=sep_id
        )
        examples.append(example)
    return examples


def pad_examples(examples, max_seq_length, pad_id=0):
    """Stack examples into fixed-shape arrays, padding on the right with `pad_id`.

    Returns a dict: input_ids (B, T) int64, token_type_ids (B, T) int64,
    attention_mask (B, T) bool (True at real tokens), and nsp_labels (B,)
    int64 when the examples are sentence pairs.
    """
    batch_size = len(examples)
    input_ids = np.full((batch_size, max_seq_length), pad_id, dtype=np.int64)  # (B, T)
    token_type_ids = np.zeros((batch_size, max_seq_length), dtype=np.int64)  # (B, T)
    lengths = np.array([len(e.input_ids) for e in examples], dtype=np.int64)  # (B,)
    if batch_size and lengths.max() > max_seq_length:
        raise DataError(f"an example has {lengths.max()} tokens, more than max_seq_length={max_seq_length}")
    attention_mask = np.arange(max_seq_length)[None, :] < lengths[:, None]  # (B, T)
    # Filling ragged rows is a loop over Python lists; the arrays it fills are the batch.
    for row, example in enumerate(examples):
        input_ids[row, : len(example.input_ids)] = example.input_ids
        token_type_ids[row, : len(example.token_type_ids)] = example.token_type_ids
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    if examples and examples[0].next_sentence_label is not None:
        batch["nsp_labels"] = np.array([e.next_sentence_label for e in examples], dtype=np.int64)  # (B,)
    return batch


def encode_documents(documents, tokenizer):
    """Documents of sentence strings -> documents of token-id lists (empty sentences and documents dropped)."""
    encoded = []
    for document in documents:
        sentences = [ids for ids in (tokenizer.encode(s) for s in document) if ids]
        if sentences:
            encoded.append(sentences)
    return encoded


class PretrainingBatcher:
    """Fixed-shape BERT pretraining batches from tokenized documents.

    Each `get_batch(rng, batch_size)` picks sentences uniformly at random from
    all documents and builds one sequence starting at each, one step of the
    reference's walk (a sentence pair, or with next_sentence=False a single
    segment); it pads them to max_seq_length and masks them afresh
    (dynamic masking, as RoBERTa; the reference instead stores dupe_factor
    fixed maskings). It keeps no state between calls: the batches depend on
    the rng alone, so the same seed gives the same batches, also after resuming.
    (Every example tosses its own fair IsNext / NotNext coin. Taking one
    example out of a whole-document walk instead would tilt the labels, since
    a walk makes more examples when its coins come up NotNext.)

    A batch is a dict of arrays:
        input_ids       (B, T) int64, masked
        token_type_ids  (B, T) int64, segment ids 0 / 1
        attention_mask  (B, T) bool, True at real tokens
        mlm_labels      (B, T) int64, the original token where one was chosen, IGNORE_INDEX elsewhere
        nsp_labels      (B,)   int64, IS_NEXT / NOT_NEXT (only when next_sentence=True)
    """

    def __init__(
        self,
        documents,
        *,
        vocab_size,
        max_seq_length=128,
        next_sentence=True,
        mask_prob=MASK_PROB,
        max_predictions=MAX_PREDICTIONS_PER_SEQ,
        short_seq_prob=SHORT_SEQ_PROB,
        word_starts=None,
        val_fraction=VAL_FRACTION,
        pad_id=PAD_ID,
        cls_id=CLS_ID,
        sep_id=SEP_ID,
        mask_id=MASK_ID,
        first_non_special_id=FIRST_NON_SPECIAL_ID,
        source="<documents>",
    ):
        """documents: list of documents, each a list of sentences, each a list of token ids.

        The last `val_fraction` of the documents are held out for validation.
        word_starts: None, or a function (B, T) ids -> (B, T) bool for whole-word masking.
        """
        documents = [[list(s) for s in doc if len(s)] for doc in documents]
        documents = [doc for doc in documents if doc]
        if not documents:
            raise DataError(f"{source}: the corpus is empty (no document has a token)")
        check_masking(mask_prob, max_predictions)      # now, not at the first batch: before a run writes anything
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        min_length = 5 if next_sentence else 3  # [CLS] A [SEP] B [SEP] / [CLS] text [SEP], one token each
        if max_seq_length < min_length:
            raise ConfigError(f"max_seq_length must be at least {min_length}, got {max_seq_length}")
        n_val = int(round(len(documents) * val_fraction))
        self.splits = {"train": documents[: len(documents) - n_val], "val": documents[len(documents) - n_val :]}
        self.source = source
        self.max_seq_length = max_seq_length
        self.next_sentence = next_sentence
        self.short_seq_prob = short_seq_prob
        self.ids = {"pad_id": pad_id, "cls_id": cls_id, "sep_id": sep_id}
        self.masking = {
            "vocab_size": vocab_size,
            "mask_id": mask_id,
            "first_non_special_id": first_non_special_id,
            "mask_prob": mask_prob,
            "max_predictions": max_predictions,
            "word_starts": word_starts,
        }
        self._start_table = {}
        self._check_split("train")

    @classmethod
    def from_tokenizer(cls, documents, tokenizer, **options):
        """Build from documents of sentence strings (encoded here) or of token-id lists, taking
        vocab_size and the special ids from `tokenizer`."""
        if any(isinstance(s, str) for doc in documents for s in doc):
            documents = encode_documents(documents, tokenizer)
        ids = {
            "vocab_size": tokenizer.vocab_size,
            "pad_id": tokenizer.pad_id,
            "cls_id": tokenizer.cls_id,
            "sep_id": tokenizer.sep_id,
            "mask_id": tokenizer.mask_id,
            "first_non_special_id": tokenizer.first_non_special_id,
        }
        return cls(documents, **{**ids, **options})

    def _check_split(self, split):
        documents = self.splits[split]
        if not documents:
            raise DataError(f"{self.source}: the {split} split has no documents")
        if self.next_sentence:
            if len(documents) < 2:
                raise DataError(
                    f"{self.source}: the {split} split has {len(documents)} document; next sentence "
                    f"prediction needs at least 2 (NotNext text comes from another document)"
                )
            if all(len(doc) < 2 for doc in documents):
                raise DataError(
                    f"{self.source}: every document of the {split} split has a single sentence; "
                    f"next sentence prediction needs documents of 2 or more sentences"
                )

    def _starts(self, split):
        """Every (document, sentence) an example may begin at: (n, 2) int array.

        Under NSP one-sentence documents are left out (they have no true next
        sentence); they still supply NotNext segments.
        """
        if split not in self._start_table:  # built once per split: it is a loop over every sentence
            documents = self.splits[split]
            self._start_table[split] = np.array(
                [(d, s) for d, doc in enumerate(documents) if len(doc) >= 2 or not self.next_sentence for s in range(len(doc))],
                dtype=np.int64,
            ).reshape(-1, 2)
        return self._start_table[split]

    def _example(self, documents, doc_index, start, rng):
        ids = {"cls_id": self.ids["cls_id"], "sep_id": self.ids["sep_id"]}
        if self.next_sentence:
            target = draw_target_length(self.max_seq_length - 3, rng, self.short_seq_prob)
            example, _ = create_pair_example(documents, doc_index, start, target, self.max_seq_length, rng, **ids)
        else:
            target = draw_target_length(self.max_seq_length - 2, rng, self.short_seq_prob)
            example, _ = create_single_example(documents[doc_index], start, target, self.max_seq_length, rng, **ids)
        return example

    def get_batch(self, rng, batch_size, split="train"):
        """One masked batch of `batch_size` sequences from the split (see the class docstring)."""
        self._check_split(split)
        documents = self.splits[split]
        starts = self._starts(split)
        picked = starts[rng.integers(len(starts), size=batch_size)]  # (B, 2) document, first sentence
        # The reference's pair building works on Python lists, one example at a time.
        examples = [self._example(documents, int(d), int(s), rng) for d, s in picked]
        batch = pad_examples(examples, self.max_seq_length, self.ids["pad_id"])
        batch["input_ids"], batch["mlm_labels"] = mask_tokens(batch["input_ids"], rng, **self.masking)
        return batch

    def fixed_validation_batches(self, n_batches, batch_size, seed=0):
        """The same `n_batches` validation batches (pairs and masks) for every call with the same arguments."""
        self._check_split("val")
        rng = np.random.default_rng(seed)
        return [self.get_batch(rng, batch_size, split="val") for _ in range(n_batches)]

    def __repr__(self):
        return (
            f"PretrainingBatcher(train={len(self.splits['train'])} documents, val={len(self.splits['val'])} documents, "
            f"max_seq_length={self.max_seq_length}, next_sentence={self.next_sentence})"
        )
