"""CLEVR accuracy: exact answer match, overall and per question family.

The family of a question comes from the last function of its program. Predictions are compared
after strip(), as openvqa does when it reads its one-answer-per-line result file back.
"""
import os

from core.evaluation.results import load_json_source

FAMILIES = {
    "count": "Count",
    "exist": "Exist",
    "greater_than": "Compare_Numbers",
    "less_than": "Compare_Numbers",
    "query_color": "Query_Attribute",
    "query_material": "Query_Attribute",
    "query_shape": "Query_Attribute",
    "query_size": "Query_Attribute",
    "equal_color": "Compare_Attribute",
    "equal_integer": "Compare_Attribute",
    "equal_material": "Compare_Attribute",
    "equal_shape": "Compare_Attribute",
    "equal_size": "Compare_Attribute",
}

# The order of openvqa's log, after 'Overall'.
FAMILY_ORDER = ("Count", "Exist", "Compare_Numbers", "Query_Attribute", "Compare_Attribute")


def _load_questions(questions_json):
    name = os.fspath(questions_json) if isinstance(questions_json, (str, os.PathLike)) else "questions"
    data = load_json_source(questions_json, name)
    if isinstance(data, dict):
        data = data.get("questions")
    if not isinstance(data, list) or not data:
        raise ValueError(f"{name}: expected a non-empty 'questions' list (CLEVR question format)")
    return data, name


def question_family(question, name="questions"):
    index = question.get("question_index", "?")
    program = question.get("program")
    if not program or "function" not in program[-1]:
        raise ValueError(f"{name}: question {index} has no 'program' ending in a 'function'")
    function = program[-1]["function"]
    if function not in FAMILIES:
        raise ValueError(f"{name}: question {index}: unknown final program function '{function}' "
                         f"(expected one of {sorted(FAMILIES)})")
    return FAMILIES[function]


def _ordered_predictions(predictions, questions, name):
    if isinstance(predictions, dict):
        indices = [q.get("question_index") for q in questions]
        missing = [i for i in indices if i not in predictions]
        extra = set(predictions) - set(indices)
        if missing or extra:
            raise ValueError(f"{name}: predictions do not match the questions: {len(missing)} question indices "
                             f"missing (e.g. {missing[:5]}), {len(extra)} unknown (e.g. {sorted(extra, key=str)[:5]})")
        return [predictions[i] for i in indices]
    predictions = list(predictions)
    if len(predictions) != len(questions):
        raise ValueError(f"{name}: expected {len(questions)} answers but got {len(predictions)}")
    return predictions


def _entry(correct, total):
    return {"correct": correct, "total": total, "accuracy": 100.0 * correct / total}


def clevr_accuracy(questions_json, predictions):
    """questions_json: path or loaded CLEVR question json (or its 'questions' list);
    predictions: answers in question order, or a dict question_index -> answer.
    Returns {'overall': pct, 'correct', 'total', 'per_family': {family: {'correct', 'total', 'accuracy'}}}."""
    questions, name = _load_questions(questions_json)
    answers = _ordered_predictions(predictions, questions, name)
    counts = {}
    correct_all = 0
    for question, predicted in zip(questions, answers):
        if "answer" not in question:
            raise ValueError(f"{name}: question {question.get('question_index', '?')} has no 'answer' "
                             "(test questions cannot be scored)")
        if not isinstance(predicted, str):
            raise ValueError(f"{name}: prediction for question {question.get('question_index', '?')} "
                             f"must be a string, got {predicted!r}")
        family = question_family(question, name)
        correct = int(predicted.strip() == question["answer"])
        correct_all += correct
        hits, total = counts.get(family, (0, 0))
        counts[family] = (hits + correct, total + 1)
    return {
        "overall": 100.0 * correct_all / len(questions),
        "correct": correct_all,
        "total": len(questions),
        "per_family": {f: _entry(*counts[f]) for f in FAMILY_ORDER if f in counts},
    }


def format_report(acc):
    """openvqa's log format, one 'name : correct / total = pct' line each, Overall first."""
    lines = ["Overall : %d / %d = %.2f\n" % (acc["correct"], acc["total"], acc["overall"])]
    for family, entry in acc["per_family"].items():
        lines.append("%s : %d / %d = %.2f\n" % (family, entry["correct"], entry["total"], entry["accuracy"]))
    return "".join(lines) + "\n"
