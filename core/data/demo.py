"""Synthetic demo data in the real VQA-v2 and CLEVR on-disk formats, deterministic from a seed.

    python -m core.data.demo --out data/demo --seed 0

Scenes are 6x6 grids holding 2-7 coloured shapes. A cell's feature is a fixed random code of its colour plus one of its
shape, plus a weak code of its row and column (real CNN grid features carry position through padding and receptive
fields; without it "left of" and "top half" could not be answered), plus small noise. Empty cells get a small non-zero
background vector, so no real cell looks like padding. See README.txt written beside the data for the layout.
"""
import argparse
import functools
import io
import json
import logging
import os
import sys
import zipfile

import numpy as np

from core.data import GeneratedDataError
from core.data.answers import load_answer_dict, prep_ans
from core.data.paths import (CLEVR_FEAT_DIRS, VQA_FEAT_DIRS, annotation_path, atomic_write_bytes, atomic_write_json,
                             question_path)
from core.logs import configure as configure_logging

log = logging.getLogger(__name__)

COLOURS = ("red", "blue", "green", "yellow", "purple", "gray")
SHAPES = ("circle", "square", "triangle", "star")
GRID = 6
DIM = 48
CELL_PX = 32
IMAGE_PX = GRID * CELL_PX
NOISE = 0.1
SUMMARY_FILE = "demo_summary.json"
FORMAT_VERSION = 1
_VQA_SPLITS = (("train", "train2014"), ("val", "val2014"), ("test", "test2015"))
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# ----------------------------------------------------------------------------------------------- scenes and features
class Codes:
    """The fixed random codes every scene of one seed shares."""

    def __init__(self, seed):
        rng = np.random.default_rng([seed, 0])
        self.colour = rng.standard_normal((len(COLOURS), DIM))
        self.shape = rng.standard_normal((len(SHAPES), DIM))
        self.row = 0.5 * rng.standard_normal((GRID, DIM))
        self.col = 0.5 * rng.standard_normal((GRID, DIM))
        self.background = 0.3 * rng.standard_normal(DIM)


class Scene:
    def __init__(self, objects):
        self.objects = objects  # list of (row, col, colour index, shape index)
        self.at = {(r, c): (r, c, k, s) for r, c, k, s in objects}

    def count(self, colour=None, shape=None):
        return sum((colour is None or k == colour) and (shape is None or s == shape) for _, _, k, s in self.objects)

    def find(self, colour=None, shape=None):
        return [o for o in self.objects if (colour is None or o[2] == colour) and (shape is None or o[3] == shape)]

    def neighbours(self, obj):
        r, c = obj[:2]
        return [self.at[p] for p in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)) if p in self.at]

    def unique_objects(self):
        """Objects that are the only one of their colour and shape (so "the red circle" names one object)."""
        return [o for o in self.objects if self.count(o[2], o[3]) == 1]


def random_scene(rng):
    """2-7 objects; each after the first sits next to an earlier one half of the time, so neighbours are common."""
    n = int(rng.integers(2, 8))
    cells = []
    while len(cells) < n:
        if cells and rng.random() < 0.5:
            r, c = cells[int(rng.integers(len(cells)))]
            dr, dc = ((-1, 0), (1, 0), (0, -1), (0, 1))[int(rng.integers(4))]
            cell = (r + dr, c + dc)
        else:
            cell = (int(rng.integers(GRID)), int(rng.integers(GRID)))
        if 0 <= cell[0] < GRID and 0 <= cell[1] < GRID and cell not in cells:
            cells.append(cell)
    return Scene([(r, c, int(rng.integers(len(COLOURS))), int(rng.integers(len(SHAPES)))) for r, c in cells])


def grid_features(scene, codes, rng):
    """(36, 48) float16, row r*6+c = cell (r, c)."""
    feat = np.empty((GRID * GRID, DIM))
    for r in range(GRID):
        for c in range(GRID):
            obj = scene.at.get((r, c))
            base = codes.colour[obj[2]] + codes.shape[obj[3]] if obj else codes.background
            feat[r * GRID + c] = base + codes.row[r] + codes.col[c]
    feat += NOISE * rng.standard_normal(feat.shape)
    return feat.astype(np.float16)


def region_arrays(scene, grid):
    """openvqa region .npz content: one box per object, the object's grid-cell feature, pixel x1,y1,x2,y2."""
    rows = [r * GRID + c for r, c, _, _ in scene.objects]
    bbox = np.array([[c * CELL_PX, r * CELL_PX, c * CELL_PX + CELL_PX - 1, r * CELL_PX + CELL_PX - 1]
                     for r, c, _, _ in scene.objects], np.float32)
    return {"x": grid[rows].astype(np.float32).T.copy(), "bbox": bbox,
            "image_h": np.array(IMAGE_PX), "image_w": np.array(IMAGE_PX)}


# ------------------------------------------------------------------------------------------------------- questions
def _pick(rng, items):
    return items[int(rng.integers(len(items)))] if items else None


def _name(obj):
    return f"{COLOURS[obj[2]]} {SHAPES[obj[3]]}"


def _yes(flag):
    return "yes" if flag else "no"


def vqa_question(scene, family, rng):
    """(question, answer, question_type, answer_type) or None when the family does not fit the scene."""
    if family == "colour_of_shape":
        shapes = [s for s in range(len(SHAPES)) if scene.count(shape=s) == 1]
        s = _pick(rng, shapes)
        return None if s is None else (f"What color is the {SHAPES[s]}?", COLOURS[scene.find(shape=s)[0][2]],
                                       "what color is the", "other")
    if family == "count_colour":
        k = int(rng.integers(len(COLOURS)))
        return f"How many {COLOURS[k]} objects are there?", str(scene.count(colour=k)), "how many", "number"
    if family == "count_shape":
        s = int(rng.integers(len(SHAPES)))
        return f"How many {SHAPES[s]}s are there?", str(scene.count(shape=s)), "how many", "number"
    if family == "exist":
        if rng.random() < 0.5:
            k, s = _pick(rng, scene.objects)[2:]
        else:
            k, s = int(rng.integers(len(COLOURS))), int(rng.integers(len(SHAPES)))
        return f"Is there a {COLOURS[k]} {SHAPES[s]}?", _yes(scene.count(k, s) > 0), "is there a", "yes/no"
    if family == "left_of":
        ref = _pick(rng, [o for o in scene.unique_objects() if (o[0], o[1] - 1) in scene.at])
        return None if ref is None else (f"What color is the object left of the {_name(ref)}?",
                                         COLOURS[scene.at[(ref[0], ref[1] - 1)][2]], "what color is the", "other")
    if family == "next_to":
        ref = _pick(rng, [o for o in scene.unique_objects() if len(scene.neighbours(o)) == 1])
        return None if ref is None else (f"What shape is next to the {_name(ref)}?",
                                         SHAPES[scene.neighbours(ref)[0][3]], "what shape is", "other")
    if family == "top_half":
        ref = _pick(rng, scene.unique_objects())
        return None if ref is None else (f"Is the {_name(ref)} in the top half?", _yes(ref[0] < GRID // 2),
                                         "is the", "yes/no")
    raise ValueError(f"unknown demo question family {family!r}")


VQA_FAMILIES = ("colour_of_shape", "count_colour", "count_shape", "exist", "left_of", "next_to", "top_half")
VQA_WEIGHTS = (1.0, 0.6, 0.6, 1.0, 3.0, 3.0, 1.0)
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@functools.lru_cache(maxsize=None)
def _same_answer_variants(answer):
    """Spellings a person might type that normalise to ``answer``."""
    variants = [answer.capitalize(), answer + ".", answer.capitalize() + ".", answer.capitalize() + "!"]
    if answer.isdigit() and int(answer) < len(_NUMBER_WORDS):
        variants += [_NUMBER_WORDS[int(answer)], _NUMBER_WORDS[int(answer)].capitalize()]
    if answer in SHAPES:
        variants += [f"a {answer}", f"the {answer}"]
    return tuple(v for v in variants if prep_ans(v) == answer)


def _wrong_answer(answer, rng):
    if answer in ("yes", "no"):
        return "no" if answer == "yes" else "yes"
    if answer.isdigit():
        n = int(answer)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    pool = COLOURS if answer in COLOURS else SHAPES
    return _pick(rng, [a for a in pool if a != answer])


def human_answers(answer, rng):
    """10 answers like the VQA annotators': mostly the truth, some spelled differently, up to 3 disagreeing."""
    n_wrong = int(np.searchsorted([0.5, 0.75, 0.9], rng.random(), side="right"))  # 0..3 with p .5 .25 .15 .1
    wrong = set(rng.permutation(10)[:n_wrong].tolist())
    variants = _same_answer_variants(answer)
    u = rng.random((10, 2))
    out = []
    for i in range(10):
        if i in wrong:
            text = _wrong_answer(answer, rng)
        elif u[i, 0] < 0.25:
            text = _pick(rng, variants)
        else:
            text = answer
        confidence = "yes" if u[i, 1] < 0.85 else ("maybe" if u[i, 1] < 0.95 else "no")
        out.append({"answer": text, "answer_confidence": confidence, "answer_id": i + 1})
    return out


def _question_set(scene, rng, n, make, families, weights):
    """Up to n distinct questions for one scene; for each, families are tried in a random order drawn by weight
    (the spatial families, which fit fewer scenes, weigh more)."""
    weights = np.asarray(weights, float)
    found, texts = [], set()
    for _ in range(n):
        # exponential races: sorting Exp(1)/w draws a weighted order without replacement
        for family in np.argsort(rng.standard_exponential(len(weights)) / weights, kind="stable").tolist():
            q = make(scene, families[family], rng)
            if q is not None and q[0] not in texts:
                texts.add(q[0])
                found.append((families[family],) + tuple(q))
                break
    return found


# ----------------------------------------------------------------------------------------------------------- CLEVR
def _prog(*steps):
    """CLEVR program: steps are (function, inputs, value_inputs)."""
    return [{"function": f, "inputs": list(i), "value_inputs": list(v)} for f, i, v in steps]


def _filter_chain(start, colour=None, shape=None):
    steps, last = [], start - 1
    if colour is not None:
        steps.append(("filter_color", [last], [COLOURS[colour]]))
        last += 1
    if shape is not None:
        steps.append(("filter_shape", [last], [SHAPES[shape]]))
        last += 1
    return steps, last


def _count_prog(colour=None, shape=None):
    steps, last = _filter_chain(1, colour, shape)
    return [("scene", [], [])] + steps, last


def clevr_question(scene, family, rng):
    """(question, answer, program) or None."""
    if family == "count":
        if rng.random() < 0.5:
            k = int(rng.integers(len(COLOURS)))
            steps, last = _count_prog(colour=k)
            return f"How many {COLOURS[k]} objects are there?", str(scene.count(colour=k)), _prog(*steps, ("count", [last], []))
        s = int(rng.integers(len(SHAPES)))
        steps, last = _count_prog(shape=s)
        return f"How many {SHAPES[s]}s are there?", str(scene.count(shape=s)), _prog(*steps, ("count", [last], []))
    if family == "exist":
        k, s = (_pick(rng, scene.objects)[2:] if rng.random() < 0.5
                else (int(rng.integers(len(COLOURS))), int(rng.integers(len(SHAPES)))))
        steps, last = _count_prog(k, s)
        return (f"Are there any {COLOURS[k]} {SHAPES[s]}s?", _yes(scene.count(k, s) > 0),
                _prog(*steps, ("exist", [last], [])))
    if family == "query_color":
        s = _pick(rng, [s for s in range(len(SHAPES)) if scene.count(shape=s) == 1])
        if s is None:
            return None
        return (f"What color is the {SHAPES[s]}?", COLOURS[scene.find(shape=s)[0][2]],
                _prog(("scene", [], []), ("filter_shape", [0], [SHAPES[s]]), ("unique", [1], []), ("query_color", [2], [])))
    if family == "query_shape":
        k = _pick(rng, [k for k in range(len(COLOURS)) if scene.count(colour=k) == 1])
        if k is None:
            return None
        return (f"What shape is the {COLOURS[k]} object?", SHAPES[scene.find(colour=k)[0][3]],
                _prog(("scene", [], []), ("filter_color", [0], [COLOURS[k]]), ("unique", [1], []), ("query_shape", [2], [])))
    if family == "equal_color":
        shapes = [s for s in range(len(SHAPES)) if scene.count(shape=s) == 1]
        if len(shapes) < 2:
            return None
        a, b = rng.choice(shapes, size=2, replace=False).tolist()
        same = scene.find(shape=a)[0][2] == scene.find(shape=b)[0][2]
        return (f"Does the {SHAPES[a]} have the same color as the {SHAPES[b]}?", _yes(same),
                _prog(("scene", [], []), ("filter_shape", [0], [SHAPES[a]]), ("unique", [1], []), ("query_color", [2], []),
                      ("scene", [], []), ("filter_shape", [4], [SHAPES[b]]), ("unique", [5], []), ("query_color", [6], []),
                      ("equal_color", [3, 7], [])))
    if family == "compare_number":
        a, b = rng.choice(len(SHAPES), size=2, replace=False).tolist()
        more = rng.random() < 0.5
        na, nb = scene.count(shape=a), scene.count(shape=b)
        word, fn, answer = ("more", "greater_than", na > nb) if more else ("fewer", "less_than", na < nb)
        return (f"Are there {word} {SHAPES[a]}s than {SHAPES[b]}s?", _yes(answer),
                _prog(("scene", [], []), ("filter_shape", [0], [SHAPES[a]]), ("count", [1], []),
                      ("scene", [], []), ("filter_shape", [3], [SHAPES[b]]), ("count", [4], []), (fn, [2, 5], [])))
    if family == "equal_integer":
        k, s = int(rng.integers(len(COLOURS))), int(rng.integers(len(SHAPES)))
        return (f"Are there the same number of {COLOURS[k]} objects and {SHAPES[s]}s?",
                _yes(scene.count(colour=k) == scene.count(shape=s)),
                _prog(("scene", [], []), ("filter_color", [0], [COLOURS[k]]), ("count", [1], []),
                      ("scene", [], []), ("filter_shape", [3], [SHAPES[s]]), ("count", [4], []), ("equal_integer", [2, 5], [])))
    if family == "relate_color":
        ref = _pick(rng, [o for o in scene.unique_objects() if (o[0], o[1] - 1) in scene.at])
        if ref is None:
            return None
        return (f"What color is the object left of the {_name(ref)}?", COLOURS[scene.at[(ref[0], ref[1] - 1)][2]],
                _prog(("scene", [], []), ("filter_color", [0], [COLOURS[ref[2]]]), ("filter_shape", [1], [SHAPES[ref[3]]]),
                      ("unique", [2], []), ("relate", [3], ["left"]), ("unique", [4], []), ("query_color", [5], [])))
    raise ValueError(f"unknown demo CLEVR family {family!r}")


CLEVR_FAMILIES = ("count", "exist", "query_color", "query_shape", "equal_color", "compare_number", "equal_integer",
                  "relate_color")
CLEVR_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.5, 1.0, 0.7, 2.0)


# ---------------------------------------------------------------------------------------------------------- writing
def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz_bytes(arrays):
    """An uncompressed .npz like np.savez, but with fixed zip timestamps so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(np.asarray(value)))
    return buf.getvalue()


def _info(subtype):
    return {"info": {"description": "TwinVQA demo data (synthetic scenes) in the VQA-v2 format", "version": "2.0",
                     "year": 2017, "contributor": "TwinVQA", "date_created": "2017-04-26 17:07:13",
                     "url": "http://visualqa.org"},
            "license": {"name": "Creative Commons Attribution 4.0 International License",
                        "url": "http://creativecommons.org/licenses/by/4.0/"},
            "data_subtype": subtype, "data_type": "mscoco"}


def _write_vqa(out, seed, codes, image_counts, questions_per_image, ans_to_ix):
    root = os.path.join(out, "vqa")
    total = sum(image_counts.values())
    iids = np.random.default_rng([seed, 1]).choice(np.arange(1, 600000), size=total, replace=False)
    summary, start = {}, 0
    for k, (split, subtype) in enumerate(_VQA_SPLITS):
        n = image_counts[split]
        split_iids = sorted(int(i) for i in iids[start:start + n])
        start += n
        rng = np.random.default_rng([seed, 10 + k])
        feat_dir = os.path.join(root, "feats", VQA_FEAT_DIRS[split][0])
        questions, annotations = [], []
        for iid in split_iids:
            scene = random_scene(rng)
            grid = grid_features(scene, codes, rng)
            atomic_write_bytes(os.path.join(feat_dir, f"{iid}.npy"), _npy_bytes(grid))
            atomic_write_bytes(os.path.join(feat_dir, f"COCO_{subtype}_{iid:012d}.jpg.npz"),
                               npz_bytes(region_arrays(scene, grid)))
            for q_no, (_, text, answer, q_type, a_type) in enumerate(
                    _question_set(scene, rng, questions_per_image, vqa_question, VQA_FAMILIES, VQA_WEIGHTS)):
                if answer not in ans_to_ix:
                    raise RuntimeError(f"demo answer {answer!r} is not in the 3129-answer list")
                qid = iid * 1000 + q_no
                questions.append({"image_id": iid, "question": text, "question_id": qid})
                annotations.append({"question_type": q_type, "multiple_choice_answer": answer,
                                    "answers": human_answers(answer, rng),
                                    "image_id": iid, "answer_type": a_type, "question_id": qid})
        head = _info(subtype)
        atomic_write_json(question_path(root, "vqa", split),
                          {**head, "task_type": "Open-Ended", "questions": questions})
        if split != "test":
            atomic_write_json(annotation_path(root, split), {**head, "annotations": annotations})
        summary[split] = {"images": n, "questions": len(questions)}
    return summary


def _write_clevr(out, seed, codes, image_counts, questions_per_image):
    root = os.path.join(out, "clevr")
    summary = {}
    for k, split in enumerate(("train", "val", "test")):
        rng = np.random.default_rng([seed, 20 + k])
        feat_dir = os.path.join(root, "feats", CLEVR_FEAT_DIRS[split])
        questions = []
        for index in range(image_counts[split]):
            scene = random_scene(rng)
            grid = grid_features(scene, codes, rng).astype(np.float32)
            atomic_write_bytes(os.path.join(feat_dir, f"{index}.npz"), npz_bytes({"x": grid}))
            for family, text, answer, program in _question_set(scene, rng, questions_per_image, clevr_question,
                                                               CLEVR_FAMILIES, CLEVR_WEIGHTS):
                q = {"image_index": index, "image_filename": f"CLEVR_{split}_{index:06d}.png", "split": split,
                     "question": text, "question_index": len(questions)}
                if split != "test":  # as the real test file: no answers, programs or families
                    q.update(answer=answer, program=program, question_family_index=CLEVR_FAMILIES.index(family))
                questions.append(q)
        atomic_write_json(question_path(root, "clevr", split),
                          {"info": {"split": split, "version": "1.0", "license": "Creative Commons Attribution "
                                    "(CC BY 4.0)", "date": "2/14/2017"}, "questions": questions})
        summary[split] = {"images": image_counts[split], "questions": len(questions)}
    return summary


README = """TwinVQA demo data (synthetic), generated by: python -m core.data.demo --out <this folder> --seed {seed}

Scenes: a {g}x{g} grid with 2-7 objects; colours {colours}; shapes {shapes}.
A cell's feature ({d}-d) = code(colour) + code(shape) + weak code(row) + weak code(column) + noise N(0, {noise}^2);
an empty cell = small background code + position codes + noise (never an all-zero row).

vqa/raw/                      VQA-v2 format
  v2_OpenEnded_mscoco_{{train2014,val2014,test2015}}_questions.json   {{'questions': [{{image_id, question, question_id}}]}}
  v2_mscoco_{{train2014,val2014}}_annotations.json   {{'annotations': [{{question_id, image_id, question_type, answer_type,
                                multiple_choice_answer, answers: 10 x {{answer, answer_confidence, answer_id}}}}]}}
  question_id = image_id * 1000 + k. Human answers: mostly the true answer, some written differently ("two", "Yes."),
  up to 3 disagreeing, so answer normalisation and soft scores matter.
vqa/feats/{{train2014,val2014,test2015}}/
  <image_id>.npy                          grid feature ({cells}, {d}) float16, row r*{g}+c = cell (r, c)   (TRAR, FEAT_TYPE grid)
  COCO_<subtype>_<image_id:012d>.jpg.npz  region feature: 'x' ({d}, n) float32 (one column per object), 'bbox' (n, 4)
                                          pixel x1,y1,x2,y2 of the object's cell (inclusive), 'image_h' = 'image_w' = {px}
                                          (MCAN / MMNasNet, FEAT_TYPE region)
clevr/raw/questions/CLEVR_{{train,val,test}}_questions.json   CLEVR format ({{'questions': [{{image_index, question, answer,
                                program: [{{function, inputs, value_inputs}}], question_index, ...}}]}}; test has no answers)
clevr/feats/{{train,val,test}}/<image_index>.npz   key 'x' ({cells}, {d}) float32 (set GRID_FEAT_SIZE ({cells}, {d}))

VQA question families: colour of a shape, count of a colour / shape, existence, colour of the object left of X,
shape next to X (4-neighbour), is X in the top half. CLEVR families: {clevr_families}.
"""


def generate(out_root, seed=0, n_train_images=1200, n_val_images=250, n_test_images=100, questions_per_image=5,
             origin="python -m core.data.demo"):
    """Write the demo data under ``out_root`` (vqa/ and clevr/ layouts, README.txt); returns a summary dict.
    ``origin`` (in the summary) says who wrote it: ensure_demo_data regenerates only what it wrote itself."""
    seed = int(seed)
    counts = {"train": int(n_train_images), "val": int(n_val_images), "test": int(n_test_images)}
    if min(counts.values()) < 1 or questions_per_image < 1:
        raise ValueError(f"demo sizes must be >= 1: images {counts}, questions_per_image {questions_per_image}")
    ans_to_ix, _ = load_answer_dict()
    codes = Codes(seed)
    summary = {"format_version": FORMAT_VERSION, "generated_by": origin, "seed": seed, "images": counts,
               "questions_per_image": int(questions_per_image), "grid": [GRID, GRID], "feature_dim": DIM,
               "vqa": _write_vqa(out_root, seed, codes, counts, questions_per_image, ans_to_ix),
               "clevr": _write_clevr(out_root, seed, codes, counts, questions_per_image)}
    text = README.format(seed=seed, g=GRID, d=DIM, cells=GRID * GRID, px=IMAGE_PX, noise=NOISE,
                         colours=", ".join(COLOURS), shapes=", ".join(SHAPES),
                         clevr_families=", ".join(CLEVR_FAMILIES))
    atomic_write_bytes(os.path.join(out_root, "README.txt"), text.encode("utf-8"))
    # written last: its presence means the data is complete
    atomic_write_json(os.path.join(out_root, SUMMARY_FILE), summary)
    return summary


def _expected_files(root):
    files = [os.path.join(root, SUMMARY_FILE)]
    files += [question_path(os.path.join(root, "vqa"), "vqa", s) for s, _ in _VQA_SPLITS]
    files += [annotation_path(os.path.join(root, "vqa"), s) for s in ("train", "val")]
    files += [question_path(os.path.join(root, "clevr"), "clevr", s) for s in ("train", "val", "test")]
    return files


AUTOMATIC = "run.py (automatic)"


class DemoDataError(GeneratedDataError):
    """DATA_ROOT holds something that is not complete demo data of this version, which is never overwritten."""


def read_summary(root):
    """The demo_summary.json a generator wrote under ``root`` (a dict), or None when there is none or it is not one."""
    try:
        with open(os.path.join(root, SUMMARY_FILE), encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def ensure_demo_data(root):
    """The demo data under ``root``, generated (default seed and sizes) when the folder is missing or empty.

    Complete data of this format version is used as it is, whatever seed and sizes `python -m core.data.demo` wrote
    it with. Data this function generated itself is generated again when a file is missing or its format is older.
    Anything else (a user's data with a file missing, another format, a folder of other files) raises
    DemoDataError naming what is wrong: a folder given as DATA_ROOT is never overwritten."""
    summary = read_summary(root)
    missing = [p for p in _expected_files(root) if not os.path.isfile(p)]
    current = summary is not None and summary.get("format_version") == FORMAT_VERSION
    if current and not missing:
        return summary
    if not os.path.isdir(root) or not os.listdir(root):
        log.info(f"generating demo data in {root} (seed 0)")
        return generate(root, origin=AUTOMATIC)
    if may_generate_into(root, origins=(AUTOMATIC,)):
        why = f"{os.path.relpath(missing[0], root)} is missing" if current else (
            f"format {summary.get('format_version')} is older than this version's {FORMAT_VERSION}")
        log.info(f"generating demo data in {root} again ({why})")
        return generate(root, origin=AUTOMATIC)
    if summary is None:
        what = f"holds no demo data (no {SUMMARY_FILE})"
    elif not current:
        what = (f"holds demo data of format {summary.get('format_version')!r}; this version reads "
                f"{FORMAT_VERSION!r}")
    else:
        what = f"misses {missing[0]}" + (f" and {len(missing) - 1} more demo file(s)" if len(missing) > 1 else "")
    # the generator writes over a demo set only (may_generate_into), so for a folder of other files it gets another
    hint = (f"write the demo data there with `python -m core.data.demo --out {root}`" if summary is not None else
            "write demo data elsewhere with `python -m core.data.demo --out NEW_DIR`")
    raise DemoDataError(f"DATA_ROOT {root} {what}. It is left as it is: {hint} (options: --seed, --train-images, "
                        "...), or give a missing or empty folder, where it is generated")


def may_generate_into(root, origins=None):
    """The one rule for writing demo data into ``root`` (run.py's automatic generation and `python -m core.data.demo`):
    a missing or empty folder, or one holding a demo set that generate wrote (its summary file says so), by one of
    ``origins`` when given. Anything else may be a user's data and is never written over."""
    if not os.path.exists(root):
        return True
    if not os.path.isdir(root):
        return False
    if not os.listdir(root):
        return True
    summary = read_summary(root)
    if summary is None or "generated_by" not in summary:
        return False
    return origins is None or summary.get("generated_by") in origins


# The entry core.data.ensure_generated calls for the datasets whose DatasetSpec names this module as generator.
ensure_data = ensure_demo_data


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.data.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("data", "demo"), help="output folder (default data/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-images", type=int, default=1200)
    parser.add_argument("--val-images", type=int, default=250)
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--questions-per-image", type=int, default=5)
    args = parser.parse_args(argv)
    configure_logging()
    if not may_generate_into(args.out):
        what = "is a file" if os.path.exists(args.out) and not os.path.isdir(args.out) else (
            f"holds files that are not a demo set of this generator (no {SUMMARY_FILE} of ours)")
        sys.exit(f"error: --out {args.out} {what}; it is left as it is: give a missing or empty folder, or one "
                 "this generator wrote")
    summary = generate(args.out, seed=args.seed, n_train_images=args.train_images, n_val_images=args.val_images,
                       n_test_images=args.test_images, questions_per_image=args.questions_per_image)
    for fmt in ("vqa", "clevr"):
        print(fmt, ", ".join(f"{s}: {v['images']} images / {v['questions']} questions" for s, v in summary[fmt].items()))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
