import json

import pytest

from core.evaluation.clevr import clevr_accuracy, format_report


def q(index, function, answer):
    return {"question_index": index, "image_index": 0, "question": "?", "answer": answer,
            "program": [{"function": "scene", "inputs": [], "value_inputs": []},
                        {"function": function, "inputs": [0], "value_inputs": []}]}


QUESTIONS = {"questions": [
    q(0, "count", "3"),
    q(1, "count", "0"),
    q(2, "exist", "yes"),
    q(3, "greater_than", "no"),
    q(4, "less_than", "yes"),
    q(5, "query_color", "red"),
    q(6, "query_shape", "cube"),
    q(7, "query_material", "metal"),
    q(8, "query_size", "large"),
    q(9, "equal_integer", "yes"),
    q(10, "equal_color", "no"),
]}
#             0    1    2      3     4      5      6         7         8        9     10
PREDICTIONS = ["3", "1", "yes", "no", "no", "red", "sphere", "metal", "large", "no", "no"]
# correct:    y    n    y      y     n      y      n         y         y        n     y   -> 7 of 11


def test_families_and_totals():
    acc = clevr_accuracy(QUESTIONS, PREDICTIONS)
    assert (acc["correct"], acc["total"]) == (7, 11)
    assert acc["overall"] == pytest.approx(100 * 7 / 11)
    fam = {f: (e["correct"], e["total"]) for f, e in acc["per_family"].items()}
    assert fam == {
        "Count": (1, 2),              # q0 right, q1 wrong
        "Exist": (1, 1),
        "Compare_Numbers": (1, 2),    # greater_than right, less_than wrong
        "Query_Attribute": (3, 4),    # shape wrong
        "Compare_Attribute": (1, 2),  # equal_integer grouped here, wrong; equal_color right
    }
    assert acc["per_family"]["Query_Attribute"]["accuracy"] == 75.0
    assert acc["per_family"]["Count"]["accuracy"] == 50.0


def test_dict_predictions_by_question_index():
    by_index = dict(enumerate(PREDICTIONS))
    by_index = {i: by_index[i] for i in reversed(range(11))}  # order of the dict must not matter
    assert clevr_accuracy(QUESTIONS, by_index)["correct"] == 7
    del by_index[4]
    with pytest.raises(ValueError, match="1 question indices missing"):
        clevr_accuracy(QUESTIONS, by_index)


def test_predictions_are_stripped_like_the_result_file(tmp_path):
    path = tmp_path / "CLEVR_val_questions.json"
    path.write_text(json.dumps({"questions": [q(0, "exist", "yes"), q(1, "exist", "no")]}))
    acc = clevr_accuracy(str(path), ["yes\n", " yes"])
    assert (acc["correct"], acc["total"]) == (1, 2)


def test_wrong_length_and_unknown_function():
    with pytest.raises(ValueError, match="expected 11 answers but got 10"):
        clevr_accuracy(QUESTIONS, PREDICTIONS[:10])
    with pytest.raises(ValueError, match="unknown final program function 'relate'"):
        clevr_accuracy({"questions": [q(0, "relate", "yes")]}, ["yes"])
    with pytest.raises(ValueError, match="has no 'answer'"):
        clevr_accuracy([{"question_index": 0, "program": [{"function": "count"}]}], ["1"])


def test_report_lines():
    acc = clevr_accuracy({"questions": [q(0, "count", "1"), q(1, "count", "2"), q(2, "exist", "no")]},
                         ["1", "3", "no"])
    # overall 2/3 = 66.67; Count 1/2 = 50.00; Exist 1/1 = 100.00
    assert format_report(acc) == ("Overall : 2 / 3 = 66.67\n"
                                  "Count : 1 / 2 = 50.00\n"
                                  "Exist : 1 / 1 = 100.00\n\n")


def test_report_lists_the_families_in_openvqas_order():
    functions = ["equal_size", "query_color", "less_than", "exist", "count"]     # every family, reverse order
    acc = clevr_accuracy({"questions": [q(i, f, "yes") for i, f in enumerate(functions)]}, ["yes"] * 5)
    names = [line.split(" : ")[0] for line in format_report(acc).splitlines() if line]
    assert names == ["Overall", "Count", "Exist", "Compare_Numbers", "Query_Attribute", "Compare_Attribute"]
