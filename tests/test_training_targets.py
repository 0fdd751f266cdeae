"""Training answers outside the answer list (issue 26): all of them trained on all-zero targets without a word; now
refused with the count, and a warning when most questions have no target."""
import json
import logging
import os
import shutil

import pytest

from core.data import build_dataset, paths
from core.data.answers import check_targets, load_answer_dict, without_target
from core.data.demo import generate
from tests.test_vqa_data import SMALL, make_cfg


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets_demo")
    generate(str(root), seed=3, **SMALL)
    return str(root)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set())


def test_without_target_counts_questions_with_no_listed_answer():
    ans_to_ix, _ = load_answer_dict()
    lists = [[{"answer": "Yes"}], [{"answer": "zzqx"}, {"answer": "two"}], [{"answer": "zzqx"}], ["no"], [None]]
    assert without_target(lists, ans_to_ix) == 2          # "Yes" -> yes, "two" -> 2 (prep_ans), as soft_scores
    warned = []
    assert check_targets(lists, ans_to_ix, "anns.json", warned.append) == 2 and not warned
    check_targets(lists[2:3] + lists[4:] + lists[:1], ans_to_ix, "anns.json", warned.append)
    assert len(warned) == 1 and warned[0].startswith("anns.json: 2 of 3 training questions have no answer")
    with pytest.raises(ValueError, match=r"^anns\.json: none of the 2 training questions has an answer"):
        check_targets([lists[2], lists[4]], ans_to_ix, "anns.json", warned.append)


def _rewrite_answers(root, keep):
    """Replace the answers of the train annotations but every ``keep``-th with an answer outside the list."""
    path = os.path.join(root, "vqa", "raw", "v2_mscoco_train2014_annotations.json")
    with open(path) as f:
        data = json.load(f)
    for i, ann in enumerate(data["annotations"]):
        if not keep or i % keep:
            for a in ann["answers"]:
                a["answer"] = "a word outside the answer list"
    with open(path, "w") as f:
        json.dump(data, f)
    return path, len(data["annotations"])


def test_training_on_answers_all_outside_the_list_is_refused(demo_root, tmp_path):
    root = str(tmp_path / "data")
    shutil.copytree(demo_root, root)
    path, total = _rewrite_answers(root, keep=0)
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path / "results"), "train")
    message = str(info.value)
    assert message.startswith(path) and f"none of the {total} training questions" in message and "\n" not in message
    build_dataset(make_cfg(root, tmp_path / "results", RUN_MODE="val"), "val")   # evaluation does not need targets


def test_training_on_mostly_unlisted_answers_warns(demo_root, tmp_path, caplog):
    root = str(tmp_path / "data")
    shutil.copytree(demo_root, root)
    build_dataset(make_cfg(demo_root, tmp_path / "results"), "train")
    assert "no answer in the answer list" not in caplog.text                 # the demo's answers are all listed
    path, total = _rewrite_answers(root, keep=3)
    with caplog.at_level(logging.WARNING):
        build_dataset(make_cfg(root, tmp_path / "results"), "train")
    assert f"{path}: {total - (total + 2) // 3} of {total} training questions have no answer" in caplog.text
