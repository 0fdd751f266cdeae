import json
import os
import pickle

import numpy as np
import pytest

from core.evaluation import results
from core.evaluation.results import write_clevr_results, write_predictions, write_vqa_results


def test_vqa_results_format_and_order(tmp_path):
    path = tmp_path / "result_run_1.json"
    write_vqa_results(path, [np.int64(5), 3, 9], ["yes", np.str_("2"), "red"], expected_qids=[3, 5, 9])
    assert json.loads(path.read_text()) == [
        {"answer": "yes", "question_id": 5},
        {"answer": "2", "question_id": 3},
        {"answer": "red", "question_id": 9},
    ]
    assert os.listdir(tmp_path) == ["result_run_1.json"]  # no temp file left behind


@pytest.mark.parametrize("qids, message", [
    ([1, 2], "1 of 3 expected question ids missing (e.g. 3)"),
    ([1, 2, 3, 4], "1 unknown question ids (e.g. 4)"),
    ([1, 2, 2, 3], "1 duplicated question ids (e.g. 2)"),
])
def test_vqa_results_refused_when_not_matching_the_question_file(tmp_path, qids, message):
    path = tmp_path / "result.json"
    with pytest.raises(ValueError) as err:
        write_vqa_results(path, qids, ["yes"] * len(qids), expected_qids=[1, 2, 3])
    assert message in str(err.value)
    assert os.listdir(tmp_path) == []


def test_vqa_results_refuses_duplicates_and_bad_values_without_expected(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(ValueError, match="duplicated"):
        write_vqa_results(path, [1, 1], ["yes", "no"])
    with pytest.raises(ValueError, match="2 question ids but 1 answers"):
        write_vqa_results(path, [1, 2], ["yes"])
    with pytest.raises(ValueError, match="answer must be a string"):
        write_vqa_results(path, [1], [7])
    with pytest.raises(ValueError, match="question_id must be an integer"):
        write_vqa_results(path, ["1"], ["yes"])
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "result.json"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_vqa_results(path, [1], ["yes"])
    assert os.listdir(tmp_path) == []

    path.write_text("old")
    with pytest.raises(OSError):
        write_clevr_results(path, ["yes"])
    with pytest.raises(OSError):
        write_predictions(path, [1], np.zeros((1, 2)))
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


def test_clevr_results_one_answer_per_line(tmp_path):
    path = tmp_path / "result.txt"
    write_clevr_results(path, ["yes", "3", "red"])
    assert path.read_bytes() == b"yes\n3\nred\n"
    with pytest.raises(ValueError, match="answer 1 contains a line break"):
        write_clevr_results(tmp_path / "bad.txt", ["yes", "no\nyes"])
    assert not (tmp_path / "bad.txt").exists()


def test_prediction_pickle_round_trip(tmp_path):
    path = tmp_path / "pred.pkl"
    logits = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.125]], dtype=np.float64)
    write_predictions(path, [np.int64(11), 22], logits)
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    assert [rec["qid"] for rec in loaded] == [11, 22]
    assert all(type(rec["qid"]) is int for rec in loaded)
    for rec, row in zip(loaded, logits):
        assert rec["pred"].dtype == np.float32
        np.testing.assert_array_equal(rec["pred"], row.astype(np.float32))
    with pytest.raises(ValueError, match="2 question ids but 1 logits rows"):
        write_predictions(tmp_path / "bad.pkl", [1, 2], logits[:1])
    with pytest.raises(ValueError, match="must be 2-D"):
        write_predictions(tmp_path / "bad.pkl", [1], logits[0])
    assert not (tmp_path / "bad.pkl").exists()
