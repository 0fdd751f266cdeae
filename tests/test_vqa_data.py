import json
import logging
import os
import re
import shutil
import types

import numpy as np
import pytest

from core.data import build_dataset, paths
from core.data.answers import load_answer_dict, prep_ans
from core.data.demo import generate
from core.data.features import parse_image_id

SMALL = dict(n_train_images=6, n_val_images=4, n_test_images=3, questions_per_image=3)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_demo")
    generate(str(root), seed=3, **SMALL)
    return str(root)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set())


def make_cfg(data_root, results_root, **kw):
    base = dict(DATASET="vqa", DATA_FORMAT="vqa", RUN_MODE="train",
                SPLIT={"train": "train", "val": "val", "test": "test"},
                FEAT_TYPE="grid", FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (36, 48), "BBOX_FEAT_SIZE": (8, 5)},
                                             "clevr": {"GRID_FEAT_SIZE": (36, 48)}},
                USE_BBOX_FEAT=False, BBOX_NORMALIZE=False, USE_GLOVE=False, GLOVE_PATH=None,
                GLOVE_SPACY_MODEL="no_such_spacy_model", WORD_EMBED_SIZE=300, DATA_ROOT=str(data_root),
                RESULTS_ROOT=str(results_root), SUBSET=None, SUBSET_IIDS=None, SUBSET_ANS_TYPES=None,
                SKIP_MISSING_FEATS=False, LOSS_FUNC="bce")
    base.update(kw)
    return types.SimpleNamespace(**base)


def _raw(root, name):
    with open(os.path.join(root, "vqa", "raw", name)) as f:
        return json.load(f)


def _copy(demo_root, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(demo_root, dst)
    return str(dst)


def _simple_words(question):  # enough for the demo questions: only '?' to delete
    return question.lower().replace("?", "").split()


def test_train_grid_samples(demo_root, tmp_path):
    ds = build_dataset(make_cfg(demo_root, tmp_path), "train")
    anns = _raw(demo_root, "v2_mscoco_train2014_annotations.json")["annotations"]
    path = "v2_OpenEnded_mscoco_train2014_questions.json"
    questions = {q["question_id"]: q for q in _raw(demo_root, path)["questions"]}
    assert ds.qids == [a["question_id"] for a in anns] and len(ds) == ds.data_size == 18
    assert ds.ans_size == 3129 and ds.token_size == len(ds.token_to_ix) and ds.pretrained_emb is None
    ans_to_ix, _ = load_answer_dict()
    for i in (0, 7):
        s = ds[i]
        assert set(s) == {"frcn_feat", "grid_feat", "bbox_feat", "ques_ix", "ans"}
        ann = anns[i]
        npy = np.load(os.path.join(demo_root, "vqa", "feats", "train2014", f"{ann['image_id']}.npy"))
        assert s["frcn_feat"].dtype == np.float32
        np.testing.assert_array_equal(s["frcn_feat"], npy.astype(np.float32))
        assert s["grid_feat"].shape == (1,) and s["bbox_feat"].shape == (1,) and not s["grid_feat"].any()
        words = _simple_words(questions[ann["question_id"]]["question"])
        assert s["ques_ix"].dtype == np.int64 and s["ques_ix"].shape == (14,)
        assert s["ques_ix"].tolist() == [ds.token_to_ix[w] for w in words] + [0] * (14 - len(words))
        expected = np.zeros(3129, np.float32)
        normalised = [prep_ans(h["answer"]) for h in ann["answers"]]
        for ans in set(normalised):
            if ans in ans_to_ix:
                expected[ans_to_ix[ans]] = min(1.0, 0.3 * normalised.count(ans))
        assert s["ans"].dtype == np.float32 and s["ans"].shape == (3129,)
        np.testing.assert_allclose(s["ans"], expected, atol=1e-6)
        assert s["ans"][ans_to_ix[ann["multiple_choice_answer"]]] == 1.0


def test_kld_targets_are_count_over_ten(demo_root, tmp_path):
    ds = build_dataset(make_cfg(demo_root, tmp_path, LOSS_FUNC="kld"), "train")
    assert abs(float(ds[0]["ans"].sum()) - sum(
        prep_ans(h["answer"]) in ds.ans_to_ix for h in ds.annotations[ds.qids[0]]["answers"]) / 10) < 1e-6


def test_vocabulary_scans_train_val_test_in_order(demo_root, tmp_path):
    ds = build_dataset(make_cfg(demo_root, tmp_path), "val")
    expected = ["PAD", "UNK", "CLS"]
    for name in ("train2014", "val2014", "test2015"):
        for q in _raw(demo_root, f"v2_OpenEnded_mscoco_{name}_questions.json")["questions"]:
            for w in _simple_words(q["question"]):
                if w not in expected:
                    expected.append(w)
    assert list(ds.token_to_ix) == expected and list(ds.token_to_ix.values()) == list(range(len(expected)))


def test_eval_modes(demo_root, tmp_path):
    val = build_dataset(make_cfg(demo_root, tmp_path), "val")
    questions = _raw(demo_root, "v2_OpenEnded_mscoco_val2014_questions.json")["questions"]
    assert val.qids == [q["question_id"] for q in questions]
    assert val.questions[val.qids[0]] == questions[0]
    s = val[0]
    assert s["ans"].shape == (1,) and s["ans"].dtype == np.float32 and not s["ans"].any()
    assert val.annotations_path.endswith("v2_mscoco_val2014_annotations.json")
    assert val.questions_path.endswith("v2_OpenEnded_mscoco_val2014_questions.json")
    test = build_dataset(make_cfg(demo_root, tmp_path), "test")
    assert test.annotations_path is None and len(test) == 9 and test[8]["ans"].shape == (1,)


@pytest.mark.parametrize("rows", [40, 30])
def test_a_grid_of_another_cell_count_is_refused(demo_root, tmp_path, rows):
    """Issue 26: grid cells are image positions; padding (40) or cutting (30) the demo's 36 cells gave wrong answers
    silently, so the dataset now refuses the first file, naming it, the shape found and the one expected (region
    features are still padded or cut to FRCN_FEAT_SIZE rows: test_region_features_with_normalised_box_feature)."""
    cfg = make_cfg(demo_root, tmp_path, FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (rows, 48), "BBOX_FEAT_SIZE": (8, 5)}})
    with pytest.raises(ValueError) as info:
        build_dataset(cfg, "val")
    message = str(info.value)
    assert re.match(re.escape(os.path.join(demo_root, "vqa", "feats", "val2014")) + r".*\.npy: ", message)
    assert "(36, 48)" in message and f"expected ({rows}, 48)" in message


def test_region_features_with_normalised_box_feature(demo_root, tmp_path):
    cfg = make_cfg(demo_root, tmp_path, FEAT_TYPE="region", USE_BBOX_FEAT=True, BBOX_NORMALIZE=True)
    ds = build_dataset(cfg, "val")
    s = ds[0]
    with np.load(os.path.join(demo_root, "vqa", "feats", "val2014", f"COCO_val2014_{ds.iids[0]:012d}.jpg.npz")) as z:
        x, bbox = z["x"], z["bbox"]
    n = x.shape[1]
    assert s["frcn_feat"].shape == (36, 48) and s["bbox_feat"].shape == (8, 5) and s["bbox_feat"].dtype == np.float32
    np.testing.assert_array_equal(s["frcn_feat"][:n], x.T)
    assert not s["frcn_feat"][n:].any() and not s["bbox_feat"][n:].any()
    x1, y1, x2, y2 = (bbox[0] / 192.0).tolist()
    np.testing.assert_allclose(s["bbox_feat"][0], [x1, y1, x2, y2, (x2 - x1) * (y2 - y1)], rtol=1e-6)
    assert abs(s["bbox_feat"][0, 4] - (31 / 192) ** 2) < 1e-6


def test_region_raw_pixel_boxes_for_mmnasnet(demo_root, tmp_path):
    cfg = make_cfg(demo_root, tmp_path, FEAT_TYPE="region", USE_BBOX_FEAT=False, BBOX_NORMALIZE=False,
                   FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (10, 48), "BBOX_FEAT_SIZE": (10, 5)}})
    ds = build_dataset(cfg, "train")
    s = ds[0]
    with np.load(ds.feat_index[ds.iids[0]]) as z:
        bbox = z["bbox"]
    assert s["bbox_feat"].shape == (10, 4) and s["frcn_feat"].shape == (10, 48)
    np.testing.assert_array_equal(s["bbox_feat"][:len(bbox)], bbox)
    assert s["bbox_feat"].max() > 1  # pixels, not normalised


def test_only_needed_files_must_exist(demo_root, tmp_path, caplog):
    root = _copy(demo_root, tmp_path)
    os.remove(os.path.join(root, "vqa", "raw", "v2_OpenEnded_mscoco_test2015_questions.json"))
    os.remove(os.path.join(root, "vqa", "raw", "v2_mscoco_val2014_annotations.json"))
    shutil.rmtree(os.path.join(root, "vqa", "feats", "test2015"))
    cfg = make_cfg(root, tmp_path / "results", DATASET="vqa")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(cfg, "train")
        build_dataset(cfg, "train")
    assert len(ds) == 18
    warnings = [r.getMessage() for r in caplog.records if "vocabulary built without" in r.getMessage()]
    assert len(warnings) == 1 and "v2_OpenEnded_mscoco_test2015_questions.json" in warnings[0]
    assert "VG_questions.json" in warnings[0]
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(cfg, "val")
    message = str(err.value)
    assert os.path.join(root, "vqa", "raw", "v2_mscoco_val2014_annotations.json") in message
    assert "expected layout" in message and "v2_OpenEnded_mscoco_train2014_questions.json" in message
    with pytest.raises(FileNotFoundError, match="test2015"):
        build_dataset(cfg, "test")


def test_missing_split_and_folder_errors(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="VG_questions.json"):
        build_dataset(make_cfg(demo_root, tmp_path, SPLIT={"train": "train+vg"}), "train")
    with pytest.raises(ValueError, match="unknown vqa split 'trian'"):
        build_dataset(make_cfg(demo_root, tmp_path, SPLIT={"train": "trian"}), "train")
    root = _copy(demo_root, tmp_path)
    shutil.rmtree(os.path.join(root, "vqa", "feats", "val2014"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join("feats", "val2014"))):
        build_dataset(make_cfg(root, tmp_path), "val")


def test_missing_feature_is_an_error_or_skipped(demo_root, tmp_path, caplog):
    root = _copy(demo_root, tmp_path)
    questions = _raw(root, "v2_OpenEnded_mscoco_val2014_questions.json")["questions"]
    gone = questions[4]["image_id"]
    os.remove(os.path.join(root, "vqa", "feats", "val2014", f"{gone}.npy"))
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(make_cfg(root, tmp_path), "val")
    assert f"image {gone}" in str(err.value) and os.path.join("feats", "val2014") in str(err.value)
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(make_cfg(root, tmp_path, SKIP_MISSING_FEATS=True), "val")
    n_gone = sum(q["image_id"] == gone for q in questions)
    assert n_gone == 3 and len(ds) == len(questions) - n_gone and gone not in ds.iids
    lines = [r.getMessage() for r in caplog.records if "SKIP_MISSING_FEATS" in r.getMessage()]
    assert len(lines) == 1 and f"dropped {n_gone} of {len(questions)}" in lines[0]
    # the region files are still there: the region loader is unaffected
    assert len(build_dataset(make_cfg(root, tmp_path, FEAT_TYPE="region"), "val")) == len(questions)


def test_bad_feature_files_name_the_file(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    questions = _raw(root, "v2_OpenEnded_mscoco_val2014_questions.json")["questions"]
    iid = questions[0]["image_id"]
    npy = os.path.join(root, "vqa", "feats", "val2014", f"{iid}.npy")
    np.save(npy, np.zeros((36, 10), np.float16))
    with pytest.raises(ValueError, match=re.escape(npy) + r".*\(cells, 48\)"):
        build_dataset(make_cfg(root, tmp_path), "val")
    npz = os.path.join(root, "vqa", "feats", "val2014", f"COCO_val2014_{iid:012d}.jpg.npz")
    np.savez(npz, x=np.zeros((48, 3), np.float32), image_h=192, image_w=192)
    with pytest.raises(ValueError, match=re.escape(npz) + r".*'bbox'"):
        build_dataset(make_cfg(root, tmp_path, FEAT_TYPE="region"), "val")
    np.savez(npz, x=np.zeros((3, 48), np.float32), bbox=np.zeros((3, 4)), image_h=192, image_w=192)
    with pytest.raises(ValueError, match=re.escape(npz) + r".*'x' must have shape \(48, n\)"):
        build_dataset(make_cfg(root, tmp_path, FEAT_TYPE="region"), "val")


def test_subsets(demo_root, tmp_path):
    full = build_dataset(make_cfg(demo_root, tmp_path), "train")
    assert build_dataset(make_cfg(demo_root, tmp_path, SUBSET=5), "train").qids == full.qids[:5]
    keep = sorted(set(full.iids))[:2]
    by_list = build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=keep), "train")
    assert set(by_list.iids) == set(keep) and len(by_list) == 6
    txt = tmp_path / "ids.txt"
    txt.write_text(f"# chosen images\n{keep[0]}\n\n{keep[1]}\n")
    jsn = tmp_path / "ids.json"
    jsn.write_text(json.dumps(keep))
    for spec in (str(txt), str(jsn)):
        assert build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=spec), "train").qids == by_list.qids
    anns = _raw(demo_root, "v2_mscoco_train2014_annotations.json")["annotations"]
    yes_no = build_dataset(make_cfg(demo_root, tmp_path, SUBSET_ANS_TYPES=["yes/no"]), "train")
    assert yes_no.qids == [a["question_id"] for a in anns if a["answer_type"] == "yes/no"]
    both = build_dataset(make_cfg(demo_root, tmp_path, SUBSET_ANS_TYPES="yes/no,number", SUBSET=2), "val")
    val_anns = {a["question_id"]: a for a in _raw(demo_root, "v2_mscoco_val2014_annotations.json")["annotations"]}
    assert len(both) == 2 and all(val_anns[q]["answer_type"] in ("yes/no", "number") for q in both.qids)


def test_subset_errors(demo_root, tmp_path):
    with pytest.raises(ValueError, match="SUBSET_ANS_TYPES"):
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_ANS_TYPES=["colour"]), "train")
    with pytest.raises(ValueError, match="SUBSET"):
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET=-3), "train")
    with pytest.raises(FileNotFoundError, match="SUBSET_IIDS"):
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=str(tmp_path / "none.txt")), "train")
    with pytest.raises(ValueError, match=r"none of its \d+ questions is about an image in SUBSET_IIDS .*--EVAL_EE"):
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=[999999999]), "train")
    train_images = sorted(set(build_dataset(make_cfg(demo_root, tmp_path), "train").iids))[:3]
    with pytest.raises(ValueError, match="none of its"):                      # train ids only: val has none of them
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=train_images), "val")
    obj = tmp_path / "ids_object.json"
    obj.write_text(json.dumps({"image_ids": train_images}))
    with pytest.raises(ValueError, match=r"ids_object\.json: a json object; expected a json list of image ids"):
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=str(obj)), "train")
    from core.data import subsets
    with pytest.raises(ValueError, match="no samples left"):                  # the image kept, its answer type not
        subsets.select([{"qid": 1, "iid": 5, "ans_type": "yes/no"}], {5: "5.npy"}, ["feats"], iids={5},
                       ans_types={"number"})


def test_loss_and_feat_type_checks(demo_root, tmp_path):
    with pytest.raises(ValueError, match="LOSS_FUNC"):
        build_dataset(make_cfg(demo_root, tmp_path, LOSS_FUNC="ce"), "train")
    with pytest.raises(ValueError, match="FEAT_TYPE"):
        build_dataset(make_cfg(demo_root, tmp_path, FEAT_TYPE="patch"), "train")
    with pytest.raises(ValueError, match="mode"):
        build_dataset(make_cfg(demo_root, tmp_path), "training")


@pytest.mark.parametrize("name, iid", [
    ("COCO_train2014_000000000009.jpg.npz", 9), ("9.npy", 9), ("COCO_test2015_000000581929.jpg.npy", 581929),
    ("/x/y/123.npz", 123)])
def test_parse_image_id(name, iid):
    assert parse_image_id(name) == iid


def test_each_annotation_trains_with_its_own_splits_question(demo_root, tmp_path):
    """An id reused across the files read together (val reusing a train id: VG's ids and VQA-v2's are different
    numberings) pairs each annotation with the question of its own file, and each sample keeps its own answers."""
    root = _copy(demo_root, tmp_path)
    raw = os.path.join(root, "vqa", "raw")
    train_q = _raw(root, "v2_OpenEnded_mscoco_train2014_questions.json")["questions"][0]
    val_q = _raw(root, "v2_OpenEnded_mscoco_val2014_questions.json")["questions"][0]
    val_qid = val_q["question_id"]
    for name, key in (("v2_OpenEnded_mscoco_val2014_questions.json", "questions"),
                      ("v2_mscoco_val2014_annotations.json", "annotations")):
        data = _raw(root, name)
        for record in data[key]:
            if record["question_id"] == val_qid:
                record["question_id"] = train_q["question_id"]
        if key == "annotations":
            val_ann = next(a for a in data[key] if a["question_id"] == train_q["question_id"])
            val_ann["answers"] = [{"answer": "purple", "answer_confidence": "yes", "answer_id": k + 1}
                                  for k in range(10)]
        with open(os.path.join(raw, name), "w") as f:
            json.dump(data, f)
    train_ann = next(a for a in _raw(root, "v2_mscoco_train2014_annotations.json")["annotations"]
                     if a["question_id"] == train_q["question_id"])
    ds = build_dataset(make_cfg(root, tmp_path, SPLIT={"train": "train+val", "val": "val", "test": "test"}), "train")
    same_id = [i for i, q in enumerate(ds.qids) if q == train_q["question_id"]]
    assert len(same_id) == 2
    first, second = (ds[i] for i in same_id)
    purple = ds.ans_to_ix["purple"]
    assert second["ans"][purple] == 1.0 and first["ans"][purple] == 0.0
    assert first["ans"][ds.ans_to_ix[prep_ans(train_ann["multiple_choice_answer"])]] > 0
    encoded = [[ds.token_to_ix.get(w, 1) for w in _simple_words(q["question"])] for q in (train_q, val_q)]
    for sample, words in zip((first, second), encoded):
        assert list(sample["ques_ix"][:len(words)]) == words


def test_a_question_id_twice_in_one_file(demo_root, tmp_path, caplog):
    """Evaluation writes and scores answers by question id: refused there. Training warns and, like openvqa, reads
    the last question of that id."""
    root = _copy(demo_root, tmp_path)
    name = "v2_OpenEnded_mscoco_val2014_questions.json"
    data = _raw(root, name)
    qid, old_qid = data["questions"][0]["question_id"], data["questions"][1]["question_id"]
    data["questions"][1]["question_id"] = qid
    anns = _raw(root, "v2_mscoco_val2014_annotations.json")
    for ann in anns["annotations"]:
        ann["question_id"] = qid if ann["question_id"] == old_qid else ann["question_id"]
    for file_name, content in ((name, data), ("v2_mscoco_val2014_annotations.json", anns)):
        with open(os.path.join(root, "vqa", "raw", file_name), "w") as f:
            json.dump(content, f)
    cfg = make_cfg(root, tmp_path, SPLIT={"train": "train+val", "val": "val", "test": "test"})
    with pytest.raises(ValueError, match=rf"{name}: two questions have question_id {qid}; each needs its own id"):
        build_dataset(cfg, "val")
    with caplog.at_level(logging.WARNING, logger="core.data"):
        train = build_dataset(cfg, "train")
    assert f"{name}: 1 questions repeat an earlier question_id (e.g. {qid}); the last one" in caplog.text
    words = [train.token_to_ix[w] for w in _simple_words(data["questions"][1]["question"])]
    both = [i for i, q in enumerate(train.qids) if q == qid]
    assert len(both) == 2 and all(list(train[i]["ques_ix"][:len(words)]) == words for i in both)
