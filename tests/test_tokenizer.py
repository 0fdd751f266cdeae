import numpy as np

from core.data.tokenizer import build_vocab, encode, max_question_length, tokenize


def test_tokenize_deletes_punctuation_and_apostrophes_and_splits_dash_slash():
    assert tokenize("What's the man's (left) hand-held item/object?") == [
        "whats", "the", "mans", "left", "hand", "held", "item", "object"]


def test_tokenize_deleted_class_is_exactly_the_originals():
    # . , ' ! ? " ( ) * # : ; are deleted (not spaced), so "10:30" -> "1030" and "a.m." -> "am"
    assert tokenize('Is "it" 10:30 a.m.; #1*?') == ["is", "it", "1030", "am", "1"]
    # other symbols stay part of the word
    assert tokenize("Cost: $5 & up!") == ["cost", "$5", "&", "up"]
    assert tokenize("semi--colon  and\ttabs") == ["semi", "colon", "and", "tabs"]


def test_vocabulary_order_special_tokens_then_first_occurrence_over_lists_in_order():
    lists = [[{"question": "What is this?"}, {"question": "Is this red?"}], [{"question": "What COLOR?"}]]
    assert build_vocab(lists) == {"PAD": 0, "UNK": 1, "CLS": 2, "what": 3, "is": 4, "this": 5, "red": 6, "color": 7}
    # the order of the lists matters
    assert list(build_vocab(lists[::-1]))[3:5] == ["what", "color"]


def test_encode_pads_unknown_and_truncates_to_max_token():
    words = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    vocab = build_vocab([[{"question": words}]])
    ids = encode(words, vocab, 14)
    assert ids.dtype == np.int64 and ids.shape == (14,)
    assert ids.tolist() == list(range(3, 17))  # "fifteen", "sixteen" dropped
    short = encode("What is that?", build_vocab([[{"question": "what is this"}]]), 14)
    assert short.tolist() == [3, 4, 1] + [0] * 11


def test_max_question_length_counts_tokens_after_cleaning():
    lists = [[{"question": "a b-c?"}], [{"question": "x/y/z w"}, {"question": "one"}]]
    assert max_question_length(lists) == 4
