"""The fields of the records in question and annotation files, checked once when a file is read: a missing or
mistyped field is one line naming the file, the entry (its index, and its question id when it has one) and the field.
"""
import numbers
import operator


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
    for index in _suspects(records, fields):
        _check_record(path, index, records[index], fields, what)
    return records


# the json type each kind has in well-formed files: one pass over them finds the few records to check in full
_PLAIN_TYPES = {"id": int, "int": int, "text": str, "answers": list, "scored_answers": list}


def _suspects(records, fields):
    """Indices of the records that may be bad (a whole file of well-formed records is passed over quickly)."""
    names = list(fields)
    types = tuple(_PLAIN_TYPES[fields[name]] for name in names)
    get = operator.itemgetter(*names)
    answers = [name for name in names if fields[name] in ("answers", "scored_answers")]
    try:
        plain = (lambda r: (type(get(r)),)) if len(names) == 1 else (lambda r: tuple(map(type, get(r))))
        suspects = [i for i, r in enumerate(records) if type(r) is not dict or plain(r) != types]
        for name in answers:
            suspects += [i for i, r in enumerate(records)
                         if not r[name] or not all(type(a) is dict and type(a.get("answer")) is str for a in r[name])]
    except (KeyError, TypeError, AttributeError):   # a record lacks a field or is no object: check them all
        return range(len(records))
    return sorted(set(suspects))


def _check_record(path, index, record, fields, what):
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


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
