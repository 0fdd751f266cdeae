"""The fields of the records in question and annotation files, checked once when a file is read: a missing or
mistyped field is one line naming the file, the entry (its index, and its question id when it has one) and the field.
"""
import numbers


def _is_id(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_int(value):
    """An integer, or a string int() reads as one ('42'): image ids are read with int(), as in openvqa."""
    return _is_id(value) or isinstance(value, str) and value.strip().isdigit()


def _is_answers(value):
    return isinstance(value, list) and all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in value)


# kind -> (check, what it must be)
KINDS = {
    "id": (_is_id, "an integer"),
    "int": (_is_int, "an integer"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "answers": (_is_answers, "a list of {'answer': str, ...} records"),
    "scored_answers": (lambda v: _is_answers(v) and len(v) > 0, "a non-empty list of {'answer': str, ...} records"),
}

VQA_QUESTION = {"question_id": "id", "image_id": "int", "question": "text"}
VQA_ANNOTATION = {"question_id": "id", "image_id": "int", "answers": "answers"}
# what scoring a val run needs besides (core/evaluation/vqa.py)
VQA_SCORED_ANNOTATION = dict(VQA_ANNOTATION, answers="scored_answers", question_type="text", answer_type="text")
CLEVR_QUESTION = {"image_index": "int", "question": "text"}


def check_records(path, records, fields, what):
    """Check that ``records`` (the list read from ``path``) holds json objects with ``fields`` ({name: kind of
    KINDS}); ``what`` names an entry in messages ('question', 'annotation'). Returns ``records``."""
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of {what}s, got {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {what} {index} is a json {type(record).__name__}, expected an object with "
                             f"{', '.join(repr(f) for f in fields)}")
        for field, kind in fields.items():
            check, expected = KINDS[kind]
            if field in record and check(record[field]):
                continue
            qid = record.get("question_id")
            entry = f"{what} {index}" + (f" (question_id {qid})" if field != "question_id" and _is_id(qid) else "")
            if field not in record:
                raise ValueError(f"{path}: {entry} lacks '{field}'")
            raise ValueError(f"{path}: {entry}: '{field}' must be {expected}, got {_short(record[field])}")
    return records


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
