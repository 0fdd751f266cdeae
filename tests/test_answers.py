import numpy as np
import pytest

from core.data.answers import (
    CONTRACTIONS,
    answers_in_order,
    load_answer_dict,
    prep_ans,
    process_digit_article,
    process_punctuation,
    score_for_count,
    soft_scores,
)


@pytest.fixture(scope="module")
def answer_dict():
    return load_answer_dict()


@pytest.mark.parametrize("text, expected", [
    ("hi-fi", "hi fi"),                      # no space next to '-' anywhere: replaced by a space
    ("well - known", "well  known"),         # '-' touches a space: deleted (double space stays)
    ("(a) (b)", "a b"),                      # ' (' and ') ' occur: both deleted everywhere
    ("red,white", "red white"),
    ("red, white", "red white"),
    ("a,b, c", "ab c"),                      # one ', ' in the text deletes every comma
    ("1000-2000", "1000 2000"),
    ("1,000-2,000", "10002000"),             # digit,digit anywhere: every mark is deleted
    ("3.5", "3.5"),                          # period before a digit kept
    ("3.5.", "3.5"),
    ("a.b", "ab"),
    ("5.", "5"),                             # the misspelt look-behind does not protect a period after a digit
])
def test_process_punctuation_hand_worked(text, expected):
    assert process_punctuation(text) == expected


def test_period_strip_removes_at_most_32_periods():
    # re.UNICODE (32) lands in sub()'s count argument in the original
    assert process_punctuation("." * 40) == "." * 8
    assert process_punctuation("x." * 40) == "x" * 32 + "x." * 8


@pytest.mark.parametrize("text, expected", [
    ("Two Dogs", "2 dogs"),
    ("The One", "1"),
    ("none", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),
    ("an apple a day", "apple day"),
    ("dont know", "don't know"),
    ("whats", "what's"),
    ("Im here", "im here"),                  # the table's key is "Im": never matches lower-cased text
    ("somebody'd", "somebodyd"),             # the table maps this one backwards
    ("  spaced   out  ", "spaced out"),
])
def test_process_digit_article_hand_worked(text, expected):
    assert process_digit_article(text) == expected


def test_contraction_table_is_the_full_one():
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["yall'd've"] == "y'all'd've" and CONTRACTIONS["twas"] == "'twas"


@pytest.mark.parametrize("text, expected", [
    ("Two.", "2"),
    ("yes!", "yes"),
    ("The 1,000 dogs", "1000 dogs"),
    ("a dog, a cat", "dog cat"),
    ("dog,cat", "dog cat"),
])
def test_prep_ans_hand_worked(text, expected):
    assert prep_ans(text) == expected


def test_score_for_count_is_the_leave_one_out_table():
    assert [score_for_count(c) for c in range(7)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0, 1.0]


def test_soft_scores_bce_and_kld(answer_dict):
    ans_to_ix, _ = answer_dict
    assert "xylophone banana" not in ans_to_ix
    answers = [{"answer": a} for a in ["2", "two", "Two.", "3", "3", "3", "4", "4", "five", "xylophone-banana"]]
    bce = soft_scores(answers, ans_to_ix, "bce")
    assert bce.dtype == np.float32 and bce.shape == (3129,)
    expected = {"2": 0.9, "3": 0.9, "4": 0.6, "5": 0.3}
    for ans, score in expected.items():
        assert bce[ans_to_ix[ans]] == np.float32(score)
    assert np.count_nonzero(bce) == 4
    kld = soft_scores(answers, ans_to_ix, "kld")
    for ans, score in {"2": 0.3, "3": 0.3, "4": 0.2, "5": 0.1}.items():
        assert kld[ans_to_ix[ans]] == np.float32(score)
    assert np.count_nonzero(kld) == 4


def test_soft_scores_saturate_at_four(answer_dict):
    ans_to_ix, _ = answer_dict
    scores = soft_scores(["yes"] * 6 + ["No"] * 4, ans_to_ix)
    assert scores[ans_to_ix["yes"]] == 1.0 and scores[ans_to_ix["no"]] == 1.0
    assert soft_scores(["zzz-not-an-answer"] * 10, ans_to_ix).sum() == 0  # still a (zero) target, as the original


def test_answer_dict_is_the_released_order(answer_dict):
    ans_to_ix, ix_to_ans = answer_dict
    assert len(ans_to_ix) == len(ix_to_ans) == 3129
    # first classifier rows of the released checkpoints (reference section 2.3)
    assert [ix_to_ans[i] for i in range(8)] == ["net", "pitcher", "orange", "yes", "white", "skiing", "red", "frisbee"]
    assert all(isinstance(k, int) for k in ix_to_ans)


def test_answer_dict_errors_on_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"net": 0}')
    with pytest.raises(ValueError, match="bad.json"):
        load_answer_dict(str(bad))


def test_answers_in_order_first_appearance():
    ans_to_ix, ix_to_ans = answers_in_order(["yes", "2", "yes", "red", "2"])
    assert ans_to_ix == {"yes": 0, "2": 1, "red": 2}
    assert ix_to_ans == {0: "yes", 1: "2", 2: "red"}
