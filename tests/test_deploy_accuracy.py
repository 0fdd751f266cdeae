"""The predictor answers demo questions correctly after demo training (issue 7).

MMNasNet-small is trained on the demo data by the engine (torch backend), exported with `run.py --RUN=export` (the
.pkl converted to a Paddle static model on the way), and the Paddle Inference predictor answers every val question in
batch mode. Its result file is scored by the official VQA evaluation against the demo's own val annotations and must
beat, by MARGIN points, the best answer per question type taken from the train annotations (computed here, scored the
same way). Its answers must also be the dynamic model's.

Why this config (val accuracy after 1 / 2 / 3 epochs, torch, full demo size: 6000 train / 1250 val questions, where the
question-type prior scores 43.89; measured on the shared 2-core machine):
- KL loss, no warm-up, LR 7e-4 (used here): 54.2 / 56.2 / 67.6 with SEED 0 (this test's run); after 3 epochs
  63.7 / 64.6 / 60.3 / 61.4 with SEED 1 / 2 / 3 / 4, so the lowest of five seeds is 16.4 points above the prior
  (after 2 epochs the lowest is 8.6 above it: too close for a test);
- the shipped BCE config (LR 1e-3, one warm-up epoch): 23.9 / 44.3 / 52.1;
- KL at LR 1e-3: 54.4 / 53.1 / 63.8 (SEED 0) and less stable across seeds; at LR 2e-3 it stays near the prior;
- MCAN-small and TRAR (KL, LR 1e-3) after 3 epochs: 62.7 / 54.5 / 60.5 and 67.9 / 54.0 / 56.8 over three seeds.
An epoch takes about 20 s here with one thread; the whole module about 95 s.
"""
import json
import os
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("paddle", reason="static export and Paddle Inference need paddlepaddle")
pytest.importorskip("torch", reason="the model is trained on the torch backend")

from core.config import load_config
from core.data import build_dataset
from core.data.demo import generate
from core.evaluation import vqa_accuracy

MODEL = "mmnasnet_small"
N_TRAIN_IMAGES, N_VAL_IMAGES = 1200, 250          # the demo's default sizes: 6000 / 1250 questions
TRAIN = dict(LOSS_FUNC="kld", LR_BASE=7e-4, WARMUP_EPOCH=0, MAX_EPOCH=3, EVAL_EVERY_EPOCH=False, SEED=0,
             VERSION="accuracytest")
MARGIN = 10.0   # points above the question-type prior (measured: +16.4 to +23.7 over five seeds)
TIE = 1e-4      # logit gap below which an exported model (equal within 1e-5) may pick the other answer


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("demo"))
    generate(root, seed=0, n_train_images=N_TRAIN_IMAGES, n_val_images=N_VAL_IMAGES, n_test_images=1)
    return root


def _raw(root, name):
    return os.path.join(root, "vqa", "raw", name)


VAL_QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"
VAL_ANNOTATIONS = "v2_mscoco_val2014_annotations.json"
TRAIN_ANNOTATIONS = "v2_mscoco_train2014_annotations.json"


@pytest.fixture(scope="module")
def answered(demo_root, tmp_path_factory):
    """Train, export through run.py, answer the val questions with `python -m deploy predict` in batch mode."""
    import run
    from backends import get_backend
    from core.engine import run as engine_run
    from deploy.__main__ import main as deploy_main
    work = str(tmp_path_factory.mktemp("work"))
    cfg = load_config(MODEL, "demo", overrides=dict(DATA_ROOT=demo_root, RESULTS_ROOT=os.path.join(work, "results"),
                                                    CKPTS_ROOT=os.path.join(work, "ckpts"), VERBOSE=False,
                                                    NUM_WORKERS=0, **TRAIN))
    engine_run(cfg, get_backend("torch"))
    epochs = TRAIN["MAX_EPOCH"]
    out = run.main(["--RUN=export", "--backend=torch", f"--MODEL={MODEL}", "--DATASET=demo",
                    f"--DATA_ROOT={demo_root}", f"--CKPT_V={TRAIN['VERSION']}", f"--CKPT_E={epochs}",
                    f"--SET=RESULTS_ROOT={work}/results", f"--SET=CKPTS_ROOT={work}/ckpts", "--SET=LOSS_FUNC=kld"])
    result = os.path.join(work, "val_result.json")
    deploy_main(["predict", "--model", out["out_dir"], "--questions", _raw(demo_root, VAL_QUESTIONS),
                 "--features-dir", os.path.join(demo_root, "vqa", "feats", "val2014"), "--out", result,
                 "--threads", "1"])
    with open(result) as f:
        answers = {r["question_id"]: r["answer"] for r in json.load(f)}
    return {"cfg": cfg, "result": result, "answers": answers,
            "ckpt": os.path.join(work, "ckpts", f"ckpt_{TRAIN['VERSION']}", f"epoch{epochs}.pkl")}


def question_type_prior(train_annotations):
    """{question_type: the most common multiple_choice_answer of that type in the train annotations}."""
    with open(train_annotations) as f:
        counts = {}
        for ann in json.load(f)["annotations"]:
            counts.setdefault(ann["question_type"], Counter())[ann["multiple_choice_answer"]] += 1
    return {qtype: c.most_common(1)[0][0] for qtype, c in counts.items()}


def test_question_type_prior_hand_worked(tmp_path):
    path = tmp_path / "ann.json"
    anns = [("how many", "2"), ("how many", "3"), ("how many", "2"), ("is there a", "no"), ("is there a", "no"),
            ("is there a", "yes")]
    path.write_text(json.dumps({"annotations": [{"question_type": t, "multiple_choice_answer": a} for t, a in anns]}))
    assert question_type_prior(str(path)) == {"how many": "2", "is there a": "no"}


def test_trained_predictor_beats_the_question_type_prior_on_val(answered, demo_root):
    questions, annotations = _raw(demo_root, VAL_QUESTIONS), _raw(demo_root, VAL_ANNOTATIONS)
    prior = question_type_prior(_raw(demo_root, TRAIN_ANNOTATIONS))
    with open(annotations) as f:
        prior_results = [{"question_id": a["question_id"], "answer": prior[a["question_type"]]}
                         for a in json.load(f)["annotations"]]
    baseline = vqa_accuracy(questions, annotations, prior_results)
    got = vqa_accuracy(questions, annotations, answered["result"])
    print(f"\nval accuracy: predictor {got['overall']} {got['perAnswerType']}; question-type prior "
          f"{baseline['overall']} {baseline['perAnswerType']}")
    # README quotes this baseline: it must be the one the demo data gives (a docs check, computed here, not pinned)
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(readme, encoding="utf-8") as f:
        assert f"the best answer per question type {baseline['overall']:.2f}" in " ".join(f.read().split())
    assert got["overall"] >= baseline["overall"] + MARGIN


def _stack(dataset, indices):
    samples = [dataset[i] for i in indices]
    return {key: np.stack([sample[key] for sample in samples]) for key in samples[0]}


def test_exported_predictor_gives_the_dynamic_models_answers(answered):
    """The torch model the engine trained, loaded from its checkpoint, answers the same val questions the same way
    (except where its top two logits are within TIE, where rounding may decide)."""
    from backends import get_backend
    cfg = answered["cfg"]
    be = get_backend("torch")
    val = build_dataset(cfg.copy(RUN_MODE="val"), "val")
    net = be.build_model(cfg, val.token_size, val.ans_size)
    be.load_checkpoint(net, answered["ckpt"])
    logits = np.concatenate([be.predict(net, _stack(val, range(start, min(start + 256, len(val)))))
                             for start in range(0, len(val), 256)])
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > TIE
    dynamic = [val.ix_to_ans[int(i)] for i in logits.argmax(1)]
    exported = [answered["answers"][qid] for qid in val.qids]
    assert sorted(answered["answers"]) == sorted(val.qids)
    assert clear.mean() > 0.99
    assert [d for d, c in zip(dynamic, clear) if c] == [e for e, c in zip(exported, clear) if c]
