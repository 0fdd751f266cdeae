"""The vqa task's evaluation: answers by argmax over the answer list, written and scored per DATA_FORMAT (VQA-v2
accuracy and the EvalAI json; CLEVR families and one answer per line)."""
import json

import numpy as np

from core import checkpoints
from core.evaluation import clevr as clevr_eval
from core.evaluation import results as result_writers
from core.evaluation import vqa as vqa_eval


def batch_outputs(cfg, logits):
    outputs = {"pred": logits.argmax(1)}
    if cfg.TEST_SAVE_PRED:
        outputs["logits"] = logits
    return outputs


def evaluate(cfg, dataset, mode, version, outputs, say):
    """Write the answers of every question of ``dataset``; score them when answers are known."""
    preds = outputs.get("pred", np.zeros(0, np.int64))
    answers = [dataset.ix_to_ans[int(i)] for i in preds]
    qids = list(dataset.qids)

    if cfg.TEST_SAVE_PRED and mode == "test":
        pred_path = checkpoints.pred_path(cfg)
        result_writers.write_predictions(pred_path, qids, outputs["logits"])
        say(f"Wrote the logits of {len(qids)} test questions to {pred_path}")

    return _BY_FORMAT[cfg.DATA_FORMAT](cfg, dataset, mode, version, qids, answers, say)


def _evaluate_vqa(cfg, dataset, mode, version, qids, answers, say):
    if mode == "test":
        path = checkpoints.test_result_path(cfg)
        expected = None if _is_subset(cfg) else _all_question_ids(dataset.questions_path)
        result_writers.write_vqa_results(path, qids, answers, expected_qids=expected)
        if expected is None:
            say(f"note: a subset of the test questions was used; {path} is not an EvalAI submission")
        say(f"Wrote {len(qids)} test answers to {path}")
        return {"result_file": path, "questions": len(qids)}
    path = checkpoints.val_result_path(cfg, version)
    result_writers.write_vqa_results(path, qids, answers)
    questions, annotations = _restrict(dataset, set(qids))
    acc = vqa_eval.vqa_accuracy(questions, annotations, path)
    say(f"{mode}: {len(qids)} questions")
    say(vqa_eval.format_report(acc))
    return {"overall": acc["overall"], "per_type": acc["perAnswerType"], "result_file": path}


def _evaluate_clevr(cfg, dataset, mode, version, qids, answers, say):
    if mode == "test":
        path = checkpoints.test_result_path(cfg, ext=".txt")
        result_writers.write_clevr_results(path, answers)
        say(f"Wrote {len(answers)} test answers to {path}")
        return {"result_file": path, "questions": len(answers)}
    path = checkpoints.val_result_path(cfg, version, ext=".txt")
    result_writers.write_clevr_results(path, answers)
    questions = [dataset.questions[q] for q in dataset.qids]
    acc = clevr_eval.clevr_accuracy({"questions": questions}, answers)
    say(clevr_eval.format_report(acc))
    per_family = {k: v["accuracy"] for k, v in acc["per_family"].items()}
    return {"overall": acc["overall"], "per_type": per_family, "result_file": path}


# DATA_FORMAT (core/registry.py FORMATS of this task) -> how its answers are written and scored
_BY_FORMAT = {"vqa": _evaluate_vqa, "clevr": _evaluate_clevr}


def _is_subset(cfg):
    return bool(cfg.SUBSET or cfg.SUBSET_IIDS or cfg.SUBSET_ANS_TYPES or cfg.SKIP_MISSING_FEATS)


def _all_question_ids(questions_path):
    with open(questions_path, encoding="utf-8") as f:
        return [q["question_id"] for q in json.load(f)["questions"]]


def _restrict(dataset, qids):
    """The question and annotation objects of the evaluated questions only (subsets evaluate on what they ran)."""
    with open(dataset.questions_path, encoding="utf-8") as f:
        questions = json.load(f)
    with open(dataset.annotations_path, encoding="utf-8") as f:
        annotations = json.load(f)
    questions["questions"] = [q for q in questions["questions"] if q["question_id"] in qids]
    annotations["annotations"] = [a for a in annotations["annotations"] if a["question_id"] in qids]
    return questions, annotations
