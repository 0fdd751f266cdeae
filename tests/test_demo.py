import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.data import demo
from core.data.answers import load_answer_dict, prep_ans
from core.data.demo import Scene, clevr_question, ensure_demo_data, generate, npz_bytes, vqa_question

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(n_train_images=8, n_val_images=4, n_test_images=3, questions_per_image=3)
RED, BLUE, GREEN, YELLOW, PURPLE = 0, 1, 2, 3, 4
CIRCLE, SQUARE, TRIANGLE, STAR = 0, 1, 2, 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    summary = generate(str(root), seed=0, **SMALL)
    return str(root), summary


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _json(root, *parts):
    with open(os.path.join(root, *parts)) as f:
        return json.load(f)


def test_generation_is_byte_identical_for_a_seed_and_differs_across_seeds(data, tmp_path):
    root, _ = data
    generate(str(tmp_path / "again"), seed=0, **SMALL)
    first, again = _files(root), _files(str(tmp_path / "again"))
    assert first.keys() == again.keys() and len(first) > 40
    assert all(first[k] == again[k] for k in first)
    generate(str(tmp_path / "other"), seed=1, **SMALL)
    other = _files(str(tmp_path / "other"))
    name = os.path.join("vqa", "raw", "v2_OpenEnded_mscoco_train2014_questions.json")
    assert other[name] != first[name]


def test_vqa_files_have_the_real_structure_and_ids(data):
    root, summary = data
    for split, sub in (("train", "train2014"), ("val", "val2014"), ("test", "test2015")):
        qfile = _json(root, "vqa", "raw", f"v2_OpenEnded_mscoco_{sub}_questions.json")
        assert {"info", "license", "data_subtype", "questions"} <= qfile.keys() and qfile["data_subtype"] == sub
        qs = qfile["questions"]
        assert len(qs) == summary["vqa"][split]["questions"] == SMALL[f"n_{split}_images"] * 3
        for q in qs:
            assert set(q) == {"image_id", "question", "question_id"}
            assert q["question_id"] // 1000 == q["image_id"] and q["question_id"] % 1000 < 3
        assert len({q["image_id"] for q in qs}) == SMALL[f"n_{split}_images"]
    assert not os.path.exists(os.path.join(root, "vqa", "raw", "v2_mscoco_test2015_annotations.json"))
    assert os.path.isfile(os.path.join(root, "README.txt"))


def test_vqa_answers_are_in_the_answer_list_and_human_answers_realistic(data):
    root, _ = data
    ans_to_ix, _ = load_answer_dict()
    same_written_differently = disagreeing = 0
    for split in ("train2014", "val2014"):
        path = f"v2_OpenEnded_mscoco_{split}_questions.json"
        qids = {q["question_id"] for q in _json(root, "vqa", "raw", path)["questions"]}
        anns = _json(root, "vqa", "raw", f"v2_mscoco_{split}_annotations.json")["annotations"]
        assert {a["question_id"] for a in anns} == qids
        for a in anns:
            mca = a["multiple_choice_answer"]
            assert mca in ans_to_ix
            assert a["answer_type"] in ("yes/no", "number", "other")
            assert [h["answer_id"] for h in a["answers"]] == list(range(1, 11))
            assert all(h["answer_confidence"] in ("yes", "maybe", "no") for h in a["answers"])
            normalised = [prep_ans(h["answer"]) for h in a["answers"]]
            assert normalised.count(mca) >= 7  # at most 3 annotators disagree
            same_written_differently += sum(h["answer"] != mca and n == mca for h, n in zip(a["answers"], normalised))
            disagreeing += sum(n != mca for n in normalised)
    assert same_written_differently > 0 and disagreeing > 0


def test_refuses_answers_outside_the_answer_list(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "load_answer_dict", lambda: ({"net": 0}, {0: "net"}))
    with pytest.raises(RuntimeError, match="not in the 3129-answer list"):
        generate(str(tmp_path), seed=0, **SMALL)


def test_grid_and_region_features_describe_the_same_scene(data):
    root, _ = data
    qs = _json(root, "vqa", "raw", "v2_OpenEnded_mscoco_val2014_questions.json")["questions"]
    for iid in sorted({q["image_id"] for q in qs}):
        grid = np.load(os.path.join(root, "vqa", "feats", "val2014", f"{iid}.npy"))
        assert grid.dtype == np.float16 and grid.shape == (36, 48)
        assert np.abs(grid.astype(np.float32)).sum(1).min() > 0  # no row looks like padding
        with np.load(os.path.join(root, "vqa", "feats", "val2014", f"COCO_val2014_{iid:012d}.jpg.npz")) as z:
            x, bbox, h, w = z["x"], z["bbox"], int(z["image_h"]), int(z["image_w"])
        assert x.dtype == np.float32 and x.shape[0] == 48 and 2 <= x.shape[1] <= 7
        assert bbox.shape == (x.shape[1], 4) and h == w == 192
        assert np.all(bbox[:, 2] - bbox[:, 0] == 31) and np.all(bbox[:, 3] - bbox[:, 1] == 31)
        assert np.all(bbox[:, :2] % 32 == 0) and bbox.min() >= 0 and bbox.max() < 192
        rows = (bbox[:, 1] // 32 * 6 + bbox[:, 0] // 32).astype(int)
        assert len(set(rows.tolist())) == len(rows)
        np.testing.assert_array_equal(x.T, grid[rows].astype(np.float32))


def test_clevr_files(data):
    root, summary = data
    families = {"count", "exist", "query_color", "query_shape", "equal_color", "greater_than", "less_than",
                "equal_integer"}
    for split in ("train", "val", "test"):
        qs = _json(root, "clevr", "raw", "questions", f"CLEVR_{split}_questions.json")["questions"]
        assert len(qs) == summary["clevr"][split]["questions"] == SMALL[f"n_{split}_images"] * 3
        assert [q["question_index"] for q in qs] == list(range(len(qs)))
        for q in qs:
            if split == "test":
                assert "answer" not in q and "program" not in q
            else:
                assert q["program"][-1]["function"] in families and isinstance(q["answer"], str)
        for index in {q["image_index"] for q in qs}:
            with np.load(os.path.join(root, "clevr", "feats", split, f"{index}.npz")) as z:
                assert z.files == ["x"] and z["x"].shape == (36, 48) and z["x"].dtype == np.float32


# A hand-built scene: red circle (2,3), blue star (2,2), two green squares (4,4) (4,5).
SCENE = Scene([(2, 3, RED, CIRCLE), (2, 2, BLUE, STAR), (4, 4, GREEN, SQUARE), (4, 5, GREEN, SQUARE)])
COUNTS = {"red": 1, "blue": 1, "green": 2, "yellow": 0, "purple": 0, "gray": 0,
          "circle": 1, "star": 1, "square": 2, "triangle": 0}


def test_vqa_question_families_on_a_hand_built_scene():
    rng = np.random.default_rng(0)
    assert vqa_question(SCENE, "left_of", rng)[:2] == ("What color is the object left of the red circle?", "blue")
    for _ in range(10):
        q, a = vqa_question(SCENE, "next_to", rng)[:2]
        assert (q, a) in {("What shape is next to the red circle?", "star"),
                          ("What shape is next to the blue star?", "circle")}
        q, a = vqa_question(SCENE, "colour_of_shape", rng)[:2]
        assert (q, a) in {("What color is the circle?", "red"), ("What color is the star?", "blue")}
        q, a, q_type, a_type = vqa_question(SCENE, "count_colour", rng)
        assert a == str(COUNTS[q.split()[2]]) and (q_type, a_type) == ("how many", "number")
        q, a, _, _ = vqa_question(SCENE, "count_shape", rng)
        assert a == str(COUNTS[q.split()[2][:-1]])
        q, a, _, a_type = vqa_question(SCENE, "top_half", rng)
        assert a == "yes" and a_type == "yes/no"  # both unique objects sit in row 2
    bottom = Scene([(3, 0, YELLOW, TRIANGLE), (5, 5, PURPLE, CIRCLE)])
    assert vqa_question(bottom, "top_half", rng)[1] == "no"
    assert vqa_question(bottom, "left_of", rng) is None and vqa_question(bottom, "next_to", rng) is None


def test_clevr_question_families_on_a_hand_built_scene():
    rng = np.random.default_rng(0)
    q, a, program = clevr_question(SCENE, "relate_color", rng)
    assert (q, a) == ("What color is the object left of the red circle?", "blue")
    assert [p["function"] for p in program] == ["scene", "filter_color", "filter_shape", "unique", "relate", "unique",
                                                "query_color"]
    for _ in range(10):
        q, a, program = clevr_question(SCENE, "equal_color", rng)
        assert a == "no" and program[-1]["function"] == "equal_color"
        q, a, program = clevr_question(SCENE, "compare_number", rng)
        words = q.rstrip("?").split()
        first, second = COUNTS[words[3][:-1]], COUNTS[words[5][:-1]]
        truth = first > second if words[2] == "more" else first < second
        assert a == ("yes" if truth else "no")
        assert program[-1]["function"] == ("greater_than" if words[2] == "more" else "less_than")


def test_npz_bytes_round_trip_and_fixed_timestamps():
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "image_h": np.array(192)}
    blob = npz_bytes(arrays)
    assert blob == npz_bytes(arrays)
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:                       # no clock in the bytes: 1980-01-01, zip's 0
        assert [i.date_time for i in zf.infolist()] == [(1980, 1, 1, 0, 0, 0)] * 2
    with np.load(io.BytesIO(blob)) as z:
        np.testing.assert_array_equal(z["x"], arrays["x"])
        assert int(z["image_h"]) == 192


def test_ensure_demo_data_generates_once(tmp_path, monkeypatch):
    calls = []

    def small_generate(root, seed=0, origin=None):
        calls.append(root)
        return generate(root, seed=seed, origin=origin, **SMALL)

    monkeypatch.setattr(demo, "generate", small_generate)
    root = str(tmp_path / "d")
    first = ensure_demo_data(root)
    second = ensure_demo_data(root)
    assert len(calls) == 1 and first == second and first["seed"] == 0
    os.remove(os.path.join(root, "vqa", "raw", "v2_mscoco_val2014_annotations.json"))
    ensure_demo_data(root)                        # its own data with a file missing: generated again
    assert len(calls) == 2 and os.path.isfile(os.path.join(root, "vqa", "raw", "v2_mscoco_val2014_annotations.json"))
    summary_path = os.path.join(root, demo.SUMMARY_FILE)
    with open(summary_path) as f:
        old = json.load(f)
    with open(summary_path, "w") as f:
        json.dump(dict(old, format_version=demo.FORMAT_VERSION - 1), f)
    ensure_demo_data(root)                        # its own data of an older format: generated again
    assert len(calls) == 3


def test_ensure_demo_data_never_overwrites_a_users_folder(tmp_path, monkeypatch):
    """Data written by `python -m core.data.demo` (another seed, other sizes) is used as it is; a folder with a demo
    file missing, of another format or of other files is an error naming what is wrong, and is left untouched."""
    root = tmp_path / "mine"
    generate(str(root), seed=5, **SMALL)
    monkeypatch.setattr(demo, "generate", lambda *a, **k: pytest.fail("must not generate into a user's folder"))
    assert ensure_demo_data(str(root))["seed"] == 5
    annotations = root / "vqa" / "raw" / "v2_mscoco_val2014_annotations.json"
    annotations.unlink()
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(demo.DemoDataError, match=r"misses .*v2_mscoco_val2014_annotations\.json\. It is left"):
        ensure_demo_data(str(root))
    assert sorted(p.name for p in root.rglob("*")) == before
    summary = json.loads((root / demo.SUMMARY_FILE).read_text())
    (root / demo.SUMMARY_FILE).write_text(json.dumps(dict(summary, format_version=0)))
    with pytest.raises(demo.DemoDataError, match="holds demo data of format 0"):
        ensure_demo_data(str(root))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(demo.DemoDataError, match=f"DATA_ROOT {other} holds no demo data .*core.data.demo --out"):
        ensure_demo_data(str(other))
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_run_py_refuses_a_folder_that_is_not_demo_data(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = subprocess.run([sys.executable, "run.py", "--RUN=train", "--MODEL=mcan_small", "--DATASET=demo",
                             f"--DATA_ROOT={tmp_path}"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: DATA_ROOT {tmp_path} holds no demo data" in result.stderr


def test_bad_sizes():
    with pytest.raises(ValueError, match="demo sizes"):
        generate("/nonexistent-never-written", n_train_images=0)
