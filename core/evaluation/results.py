"""Result files: EvalAI json for VQA, one-answer-per-line text for CLEVR, SAVE_PRED pickles, and the top-k
classes per image of a classification run.

Every writer validates first and serialises in memory, then writes through
core.checkpoints.atomic_write (temp file beside the target, then rename), so an error never
leaves a partial file and never clobbers an older one.
"""
import json
import numbers
import os
import pickle

import numpy as np

from core.checkpoints import atomic_write
from core.text import read_utf8


def load_json_source(source, name):
    """`source` is a path (str / os.PathLike) to a json file or an already-loaded object."""
    if isinstance(source, (str, os.PathLike)):
        try:
            return json.loads(read_utf8(source))
        except FileNotFoundError:
            raise FileNotFoundError(f"{name}: file {os.fspath(source)} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: file {os.fspath(source)} is not valid json ({e})") from None
    return source


def _atomic_write_bytes(path, data):
    with atomic_write(path, "wb") as f:
        f.write(data)


def _as_qid(qid, where):
    if isinstance(qid, bool) or not isinstance(qid, numbers.Integral):
        raise ValueError(f"{where}: question_id must be an integer, got {qid!r}")
    return int(qid)


def _as_answer(answer, where):
    if not isinstance(answer, str):
        raise ValueError(f"{where}: answer must be a string, got {answer!r}")
    return str(answer)


def _examples(ids, k=5):
    ids = sorted(ids)
    shown = ", ".join(str(i) for i in ids[:k])
    return shown + (", ..." if len(ids) > k else "")


def check_qid_coverage(qids, expected_qids, what):
    """Raise ValueError unless `qids` holds each of `expected_qids` exactly once and nothing else."""
    seen, duplicates = set(), set()
    for q in qids:
        if q in seen:
            duplicates.add(q)
        seen.add(q)
    expected = set(expected_qids)
    missing = expected - seen
    unknown = seen - expected
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(expected)} expected question ids missing (e.g. {_examples(missing)})")
    if unknown:
        problems.append(f"{len(unknown)} unknown question ids (e.g. {_examples(unknown)})")
    if duplicates:
        problems.append(f"{len(duplicates)} duplicated question ids (e.g. {_examples(duplicates)})")
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))


def write_vqa_results(path, qids, answers, expected_qids=None):
    """EvalAI result json: [{'answer': str, 'question_id': int}, ...] in the given order.

    With `expected_qids` (the question file's ids) the file is refused unless it covers each of
    them exactly once: EvalAI rejects anything else ("Results do not correspond to current VQA set").
    Duplicated ids are refused in any case.
    """
    qids, answers = list(qids), list(answers)
    if len(qids) != len(answers):
        raise ValueError(f"write_vqa_results({os.fspath(path)}): {len(qids)} question ids but {len(answers)} answers")
    where = f"write_vqa_results({os.fspath(path)})"
    qids = [_as_qid(q, where) for q in qids]
    answers = [_as_answer(a, where) for a in answers]
    if expected_qids is not None:
        expected = [_as_qid(q, where + " expected_qids") for q in expected_qids]
        check_qid_coverage(qids, expected, f"{where}: refusing to write, results do not match the question file")
    else:
        check_qid_coverage(qids, set(qids), f"{where}: refusing to write")
    records = [{"answer": a, "question_id": q} for q, a in zip(qids, answers)]
    _atomic_write_bytes(path, json.dumps(records).encode("utf-8"))


def write_clevr_results(path, answers):
    """CLEVR result file: one answer per line, in question order."""
    where = f"write_clevr_results({os.fspath(path)})"
    lines = []
    for i, answer in enumerate(answers):
        answer = _as_answer(answer, f"{where} answer {i}")
        if "\n" in answer or "\r" in answer:
            raise ValueError(f"{where}: answer {i} contains a line break: {answer!r}")
        lines.append(answer + "\n")
    _atomic_write_bytes(path, "".join(lines).encode("utf-8"))


def write_predictions(path, qids, logits):
    """SAVE_PRED pickle: [{'pred': float32 logits row, 'qid': qid}, ...] in the given order."""
    where = f"write_predictions({os.fspath(path)})"
    qids = list(qids)
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"{where}: logits must be 2-D (questions, answers), got shape {logits.shape}")
    if logits.shape[0] != len(qids):
        raise ValueError(f"{where}: {len(qids)} question ids but {logits.shape[0]} logits rows")
    rows = logits.astype(np.float32, copy=False)
    records = [{"pred": rows[i].copy(), "qid": _as_qid(q, where)} for i, q in enumerate(qids)]
    _atomic_write_bytes(path, pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))


def write_classification_results(path, image_ids, ranked_names):
    """Classification result json: {image id (its path or name): [class names, best first]}, in the given order."""
    where = f"write_classification_results({os.fspath(path)})"
    image_ids, ranked_names = [str(i) for i in image_ids], [list(r) for r in ranked_names]
    if len(image_ids) != len(ranked_names):
        raise ValueError(f"{where}: {len(image_ids)} image ids but {len(ranked_names)} rows of classes")
    seen, duplicates = set(), set()
    for i in image_ids:
        if i in seen:
            duplicates.add(i)
        seen.add(i)
    if duplicates:
        raise ValueError(f"{where}: refusing to write, {len(duplicates)} duplicated image ids "
                         f"(e.g. {_examples(duplicates)})")
    records = {i: [_as_answer(n, f"{where} image {i}") for n in names] for i, names in zip(image_ids, ranked_names)}
    _atomic_write_bytes(path, json.dumps(records).encode("utf-8"))
