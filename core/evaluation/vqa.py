"""Official VQA v2 accuracy (VQAEval), reproduced from the reference description (section 4).

Per question, with the 10 ground-truth (GT) answer records of the annotation:
- prediction: '\\n' and '\\t' -> ' ', strip, process_punctuation, process_digit_article (always);
- GT answers: process_punctuation only, and only when the 10 answers are not all identical;
- for each GT record j: acc_j = min(1, #{other records whose answer equals the prediction} / 3);
  the question's accuracy is the mean of acc_j.
"Other records" follows the official `item != gtAnsDatum` dict comparison: it drops every record
equal to record j. With the official files (each record has a distinct answer_id) that is exactly
leave-one-out; records without answer_id that repeat (same answer, same confidence) are all dropped.
Percentages: round(100 * mean, n), per question, per answer type, per question type and overall.
"""
import os
from collections import Counter

from core.data.answers import process_digit_article, process_punctuation
from core.evaluation.results import check_qid_coverage, load_json_source


def _name(source, default):
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else default


def _load_annotations(annotations_json):
    name = _name(annotations_json, "annotations")
    data = load_json_source(annotations_json, name)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{name}: expected a dict with an 'annotations' list (official VQA annotation format)")
    by_qid = {}
    for ann in data["annotations"]:
        for key in ("question_id", "answers", "question_type", "answer_type"):
            if key not in ann:
                raise ValueError(f"{name}: annotation {ann.get('question_id', '?')} lacks the key '{key}'")
        answers = ann["answers"]
        if not answers or not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
            raise ValueError(f"{name}: annotation {ann['question_id']}: 'answers' must be a non-empty list of "
                             "{'answer': str, ...} records")
        by_qid[ann["question_id"]] = ann
    if not by_qid:
        raise ValueError(f"{name}: the 'annotations' list is empty")
    return by_qid, name


def _check_questions(questions_json, annotation_qids, ann_name):
    name = _name(questions_json, "questions")
    data = load_json_source(questions_json, name)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ValueError(f"{name}: expected a dict with a 'questions' list (official VQA question format)")
    question_qids = {q.get("question_id") for q in data["questions"]}
    absent = [q for q in annotation_qids if q not in question_qids]
    if absent:
        shown = ", ".join(str(q) for q in sorted(absent)[:5])
        raise ValueError(f"{name}: {len(absent)} question ids of {ann_name} are not in this question file "
                         f"(e.g. {shown}); are the question and annotation files of the same split?")


def _load_results(results_json):
    name = _name(results_json, "results")
    data = load_json_source(results_json, name)
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a list of {{'question_id': int, 'answer': str}} records")
    by_qid = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or "question_id" not in rec or not isinstance(rec.get("answer"), str):
            raise ValueError(f"{name}: record {i} must be {{'question_id': int, 'answer': str}}, got {rec!r}")
        by_qid[rec["question_id"]] = rec["answer"]  # a repeated qid: the last record wins, as in the official loadRes
    return by_qid, name


def normalize_prediction(answer):
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def _record_key(record):
    try:
        key = tuple(sorted(record.items()))
        hash(key)
        return key
    except TypeError:
        return repr(sorted(record.items(), key=lambda kv: kv[0]))


def _memoized(fn):
    """The normalisers are pure and the answer vocabulary is small: cache per evaluation run."""
    cache = {}

    def call(text):
        if text not in cache:
            cache[text] = fn(text)
        return cache[text]
    return call


def question_accuracy(prediction, gt_records, punctuation=process_punctuation):
    """Accuracy in [0, 1] of one already-normalised prediction against the GT answer records."""
    if len({r["answer"] for r in gt_records}) > 1:
        gt_records = [dict(r, answer=punctuation(r["answer"])) for r in gt_records]
    keys = [_record_key(r) for r in gt_records]
    copies = Counter(keys)
    total_matches = sum(1 for r in gt_records if r["answer"] == prediction)
    accs = []
    for record, key in zip(gt_records, keys):
        matches = total_matches - (copies[key] if record["answer"] == prediction else 0)
        accs.append(min(1, float(matches) / 3))
    return float(sum(accs)) / len(accs)


def vqa_accuracy(questions_json, annotations_json, results_json, n=2):
    """Official VQA accuracy in percent.

    questions_json / annotations_json: paths or loaded dicts in the official format (questions may be
    None to skip the consistency check); results_json: path or list of {'question_id', 'answer'}.
    The results must cover exactly the annotations' question ids.
    Returns {'overall', 'perAnswerType', 'perQuestionType', 'perQuestion'}, each rounded to n decimals.
    """
    annotations, ann_name = _load_annotations(annotations_json)
    if questions_json is not None:
        _check_questions(questions_json, annotations.keys(), ann_name)
    results, res_name = _load_results(results_json)
    check_qid_coverage(results.keys(), annotations.keys(),
                       f"{res_name}: results do not correspond to {ann_name}")

    normalize, punctuation = _memoized(normalize_prediction), _memoized(process_punctuation)
    acc_all, acc_qtype, acc_atype, per_question = [], {}, {}, {}
    for qid, ann in annotations.items():
        acc = question_accuracy(normalize(results[qid]), ann["answers"], punctuation)
        acc_all.append(acc)
        acc_qtype.setdefault(ann["question_type"], []).append(acc)
        acc_atype.setdefault(ann["answer_type"], []).append(acc)
        per_question[qid] = round(100 * acc, n)

    def pct(values):
        return round(100 * float(sum(values)) / len(values), n)

    return {
        "overall": pct(acc_all),
        "perAnswerType": {t: pct(v) for t, v in acc_atype.items()},
        "perQuestionType": {t: pct(v) for t, v in acc_qtype.items()},
        "perQuestion": per_question,
    }


def format_report(acc):
    """The lines openvqa appends to the run log after a VQA validation."""
    text = "Overall Accuracy is: %.02f\n" % acc["overall"]
    text += "".join("%s : %.02f " % (t, v) for t, v in acc["perAnswerType"].items())
    return text + "\n\n"
