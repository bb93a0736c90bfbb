"""Data: reading text, and building batches for pretraining and fine-tuning.

  text_files.py  read a user's UTF-8 file; cut text into documents of sentences
  lm.py          causal-LM windows (GPT): train split, fixed validation batches
  mlm.py         BERT masking: 15% chosen, 80/10/10, labels only where chosen
  nsp.py         BERT sequences (sentence pairs / single segments) and the batcher
  classify.py    labelled files, label vocabularies, classification batches
  baselines.py   the yardsticks to beat: unigram and bigram losses, a bag-of-characters classifier
  builtin/       the built-in Chinese "mini world" corpus (documents of sentences), its reviews and probes

Every builder takes an explicit numpy.random.Generator: the same seed gives the same batches.
Imports: errors, storage's json_files.py (label files in JSONL), autograd (for IGNORE_INDEX) and
tokenizers (for the special-token ids).
"""

# ---- the built-in corpus: a seeded Chinese "mini world" (corpus.py, world.py, reviews.py, probes.py) ----
from numpretrain.data.baselines import BagOfCharacters
from numpretrain.data.builtin.corpus import corpus_text, generate_documents
from numpretrain.data.builtin.probes import Probe, fill_mask_probes, probes
from numpretrain.data.builtin.reviews import (
    LABEL_NAMES,
    NEGATIVE_CLOSINGS,
    POSITIVE_CLOSINGS,
    SENTIMENT_WORDS,
    ReviewData,
    review_dataset,
    split_adjectives,
)
from numpretrain.data.classify import (
    LabelledExample,
    LabelVocabulary,
    encode_cloze,
    encode_for_bert,
    encode_for_gpt,
    load_labelled_file,
    save_labelled_file,
)
from numpretrain.data.lm import CausalLMDataset
from numpretrain.data.mlm import IGNORE_INDEX, MASK_PROB, MAX_PREDICTIONS_PER_SEQ, mask_tokens
from numpretrain.data.nsp import (
    IS_NEXT,
    NOT_NEXT,
    PretrainingBatcher,
    create_pair_examples,
    create_single_examples,
    encode_documents,
    truncate_seq_pair,
)
from numpretrain.data.text_files import read_text_file, split_documents
