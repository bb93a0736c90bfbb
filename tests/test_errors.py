"""The checks every layer shares (numpretrain/errors.py): one message each, the caller's exception."""

import numpy as np
import pytest

from numpretrain.errors import ConfigError, DataError, check_heads_divide_width, check_ids_in_range


@pytest.mark.parametrize("ids", [[], np.zeros((0, 3), np.int64), [0, 4], np.array([[0, 1], [2, 4]])])
def test_ids_in_range_pass(ids):
    check_ids_in_range(ids, 5)


def test_the_first_bad_id_in_reading_order_is_named_with_the_range_and_where():
    ids = np.array([[0, 7], [-3, 9]])   # 7 comes first, though -3 is the smallest and 9 the largest
    with pytest.raises(ValueError, match=r"^GPT: token id 7 is out of range; token ids must be in \[0, 5\)$"):
        check_ids_in_range(ids, 5, where="GPT")


def test_ids_keep_the_callers_exception_and_words():
    with pytest.raises(IndexError, match=r"^Embedding 'wte': id 11 is out of range; ids must be in \[0, 11\)$"):
        check_ids_in_range([3, 11], 11, what="id", where="Embedding 'wte'", error=IndexError)
    with pytest.raises(DataError, match=r"^token id -1 is out of range"):
        check_ids_in_range([-1], 5, error=DataError)


def test_without_a_size_only_negative_ids_are_refused():
    check_ids_in_range([0, 10**9], None)
    with pytest.raises(DataError, match=r"^corpus\.txt: token id -2 is out of range; token ids must be non-negative$"):
        check_ids_in_range([5, -2], None, where="corpus.txt", error=DataError)


def test_heads_must_divide_the_width():
    check_heads_divide_width(12, 4, "SelfAttention")
    with pytest.raises(ConfigError, match=r"^SelfAttention: n_embd=10 is not divisible by n_head=3 "
                                          r"\(each head gets n_embd / n_head channels\)$"):
        check_heads_divide_width(10, 3, "SelfAttention")
    with pytest.raises(ConfigError, match=r"^n_embd=12 is not divisible by n_head=5"):
        check_heads_divide_width(12, 5)
