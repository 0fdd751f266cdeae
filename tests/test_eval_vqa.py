"""Official VQA accuracy on hand-worked cases.

Leave-one-out reminder: with k of the 10 GT answers equal to the prediction, the 10-k records that do
not match see k matches among the other 9, the k matching ones see k-1. So
accuracy = ((10-k)*min(1,k/3) + k*min(1,(k-1)/3)) / 10:
k=1 -> (9*1/3 + 0)/10 = 0.3; k=2 -> (8*2/3 + 2*1/3)/10 = 0.6; k=3 -> (7*1 + 3*2/3)/10 = 0.9; k>=4 -> 1.
"""
import json

import pytest

from core.evaluation.vqa import format_report, vqa_accuracy


def ann(qid, answers, qtype="what is", atype="other", answer_ids=True):
    records = []
    for i, a in enumerate(answers):
        rec = {"answer": a, "answer_confidence": "yes"}
        if answer_ids:
            rec["answer_id"] = i + 1
        records.append(rec)
    return {"question_id": qid, "image_id": 1, "question_type": qtype, "answer_type": atype,
            "multiple_choice_answer": answers[0], "answers": records}


def files(anns, preds):
    """(questions, annotations, results) objects for a list of annotations and {qid: prediction}."""
    questions = {"questions": [{"question_id": a["question_id"], "image_id": 1, "question": "?"} for a in anns]}
    annotations = {"annotations": anns}
    results = [{"question_id": q, "answer": p} for q, p in preds.items()]
    return questions, annotations, results


def single(gt, pred, **kw):
    """Per-question percentage of one question."""
    acc = vqa_accuracy(*files([ann(1, gt, **kw)], {1: pred}))
    return acc["perQuestion"][1]


def test_all_annotators_agree():
    # 10 x "yes": every record sees 9 matches among the others -> min(1, 9/3) = 1 -> 100
    assert single(["yes"] * 10, "yes") == 100.0
    assert single(["yes"] * 10, "no") == 0.0


@pytest.mark.parametrize("k, expected", [(1, 30.0), (2, 60.0), (3, 90.0), (4, 100.0), (0, 0.0)])
def test_disagreeing_annotators_leave_one_out(k, expected):
    # expected values worked in the module docstring
    gt = ["red"] * k + ["blue"] * (10 - k)
    assert single(gt, "red") == expected


def test_matching_position_does_not_matter():
    # 2 of 10 at the end instead of the start: still (8*2/3 + 2*1/3)/10 = 0.6
    assert single(["blue"] * 8 + ["red"] * 2, "red") == 60.0


def test_prediction_punctuation_and_whitespace():
    # "yes." -> period stripped -> "yes"; 3 of 10 GT say yes -> 0.9
    assert single(["yes"] * 3 + ["no"] * 7, "yes.") == 90.0
    # newline / tab -> space, then strip -> "yes"
    assert single(["yes"] * 3 + ["no"] * 7, "\tyes\n") == 90.0


def test_gt_gets_punctuation_only_when_answers_disagree():
    # disagreeing GT: "t-shirt" -> "t shirt" (hyphen not next to a space becomes a space);
    # prediction "t-shirt" -> "t shirt" too -> 5 matches -> 1.0
    assert single(["t-shirt"] * 5 + ["shirt"] * 5, "t-shirt") == 100.0
    # identical GT are left raw ("t-shirt") while the prediction becomes "t shirt" -> no match
    assert single(["t-shirt"] * 10, "t-shirt") == 0.0


def test_gt_gets_no_digit_article_processing():
    # GT "yes!" (disagreeing) -> punctuation turns '!' into a space -> "yes " (no strip/split for GT);
    # prediction "yes" -> "yes"; "yes " != "yes" -> 0 matches -> 0
    assert single(["yes!"] * 4 + ["no"] * 6, "yes") == 0.0
    # GT "the dog" keeps its article, prediction "the dog" -> "dog" -> no match
    assert single(["the dog"] * 4 + ["cat"] * 6, "the dog") == 0.0


def test_number_words():
    # prediction "two" -> "2"; 2 of 10 GT say "2" -> 0.6
    assert single(["2"] * 2 + ["3"] * 8, "two") == 60.0
    # identical GT "two" stay words, the prediction becomes "2" -> 0
    assert single(["two"] * 10, "two") == 0.0


def test_articles():
    # prediction "a dog" -> "dog"; 3 of 10 GT say "dog" -> 0.9
    assert single(["dog"] * 3 + ["cat"] * 7, "a dog") == 90.0


def test_contractions():
    # prediction "dont" -> "don't"; 4 of 10 GT say "don't" -> 1.0
    assert single(["don't"] * 4 + ["no"] * 6, "dont") == 100.0


def test_per_type_averages_and_report():
    anns = [
        ann(1, ["yes"] * 10, "is the", "yes/no"),               # pred yes -> 1.0
        ann(2, ["yes"] * 2 + ["no"] * 8, "is this", "yes/no"),  # pred yes -> 0.6
        ann(3, ["2"] + ["3"] * 9, "how many", "number"),        # pred 2 -> 0.3
        ann(4, ["red"] * 10, "what color", "other"),            # pred blue -> 0.0
    ]
    acc = vqa_accuracy(*files(anns, {1: "yes", 2: "yes", 3: "2", 4: "blue"}))
    # yes/no: (1.0 + 0.6)/2 = 0.8; overall: (1 + 0.6 + 0.3 + 0)/4 = 0.475
    assert acc["overall"] == 47.5
    assert acc["perAnswerType"] == {"yes/no": 80.0, "number": 30.0, "other": 0.0}
    assert acc["perQuestionType"] == {"is the": 100.0, "is this": 60.0, "how many": 30.0, "what color": 0.0}
    assert acc["perQuestion"] == {1: 100.0, 2: 60.0, 3: 30.0, 4: 0.0}
    assert list(acc["perAnswerType"]) == ["yes/no", "number", "other"]  # first-appearance order
    assert format_report(acc) == "Overall Accuracy is: 47.50\nyes/no : 80.00 number : 30.00 other : 0.00 \n\n"


def test_rounding():
    anns = [ann(q, ["yes"] * 10) for q in (1, 2, 3)]
    # one of three right: 100/3 = 33.333... -> 33.33 (n=2), 33.3 (n=1)
    args = files(anns, {1: "yes", 2: "no", 3: "no"})
    assert vqa_accuracy(*args)["overall"] == 33.33
    assert vqa_accuracy(*args, n=1)["overall"] == 33.3
    # two of three: 66.666... -> 66.67
    assert vqa_accuracy(*files(anns, {1: "yes", 2: "yes", 3: "no"}))["overall"] == 66.67
    # 0.3 (one matching answer): 100*0.3 = 30.000000000000004 -> 30.0
    assert single(["a1"] + ["b"] * 9, "a1") == 30.0


def test_qid_mismatch_is_a_clear_error():
    anns = [ann(q, ["yes"] * 10) for q in (1, 2, 3)]
    questions, annotations, _ = files(anns, {})
    results = [{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": "yes"},
               {"question_id": 99, "answer": "yes"}]
    with pytest.raises(ValueError) as err:
        vqa_accuracy(questions, annotations, results)
    msg = str(err.value)
    assert "1 of 3 expected question ids missing (e.g. 3)" in msg
    assert "1 unknown question ids (e.g. 99)" in msg


def test_questions_of_another_split_are_rejected():
    anns = [ann(1, ["yes"] * 10)]
    _, annotations, results = files(anns, {1: "yes"})
    with pytest.raises(ValueError, match="not in this question file"):
        vqa_accuracy({"questions": [{"question_id": 7}]}, annotations, results)


def test_bad_records_are_rejected():
    questions, annotations, _ = files([ann(1, ["yes"] * 10)], {})
    with pytest.raises(ValueError, match="record 0"):
        vqa_accuracy(questions, annotations, [{"question_id": 1, "answer": 3}])
    broken = {"annotations": [{"question_id": 1, "answers": []}]}
    with pytest.raises(ValueError, match="lacks the key 'question_type'"):
        vqa_accuracy(None, broken, [{"question_id": 1, "answer": "yes"}])


def test_paths_give_the_same_numbers(tmp_path):
    anns = [ann(1, ["yes"] * 2 + ["no"] * 8, "is this", "yes/no"), ann(2, ["red"] * 10)]
    objs = files(anns, {1: "yes", 2: "red"})
    paths = []
    for name, obj in zip(("q.json", "a.json", "r.json"), objs):
        (tmp_path / name).write_text(json.dumps(obj))
        paths.append(str(tmp_path / name))
    # (0.6 + 1.0)/2 = 0.8
    assert vqa_accuracy(*paths)["overall"] == 80.0
    with pytest.raises(FileNotFoundError, match="missing.json"):
        vqa_accuracy(paths[0], paths[1], str(tmp_path / "missing.json"))


def test_records_without_answer_id_follow_the_official_dict_comparison():
    # Official code drops every GT record equal to the current one. Without answer_id the two
    # {"answer": "yes"} records are equal, so each "yes" record sees 0 matches among "others";
    # each "no" record sees 2 -> (8*2/3 + 2*0)/10 = 16/30 = 0.5333 -> 53.33
    assert single(["yes"] * 2 + ["no"] * 8, "yes", answer_ids=False) == 53.33


def test_repeated_result_last_one_wins():
    questions, annotations, _ = files([ann(1, ["yes"] * 10)], {})
    results = [{"question_id": 1, "answer": "no"}, {"question_id": 1, "answer": "yes"}]
    assert vqa_accuracy(questions, annotations, results)["overall"] == 100.0
