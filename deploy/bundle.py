"""The inference folder ("bundle"): what an exporter writes and what a predictor reads. numpy, json and yaml only.

    <dir>/inference.json + inference.pdiparams   runtime 'paddle': the PIR program and parameters of
                                                 paddle.jit.save, named as Paddle's own tools name them (folders
                                                 written before, model.json + model.pdiparams, are still read)
          model.onnx                             runtime 'onnx'
          vocab.json                     token -> index, the training vocabulary
          answers.json                   answer strings; position = logit column
          config.yml                     the run's config keys (usable as run.py --CONFIG)
          manifest.json                  written last, so its presence means the folder is complete:
    {format, format_version, runtime, model, model_use, dataset, data_format, max_token, token_size, answer_size,
     feature: {type, ext, rows, dim, bbox_rows, bbox_cols, use_bbox_feat, bbox_normalize}, score (sigmoid|softmax),
     inputs: [{name, shape, dtype}] (batch -1), outputs: [...], files: {role: name}, sha256: {name: hex},
     framework, framework_version, checkpoint, checkpoint_epoch, tau, created, verified_max_abs_diff}

Questions and features go through the training pipeline's own functions (core.data.tokenizer.encode,
core.data.features.load_grid / load_region / load_clevr_grid), with the settings the manifest records.
"""
import contextlib
import datetime
import json
import os
import shutil
import tempfile
import warnings

import numpy as np
import yaml

from core import registry
from core.checkpoints import atomic_write
from core.config import DERIVED, FIXED
from core.data import build_dataset, features
from core.data import vqa as vqa_data
from core.data.answers import load_answer_dict
from core.data.tokenizer import UNK, encode, tokenize
from formats.integrity import file_sha256

FORMAT = "twinvqa-inference"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"
ANSWERS_FILE = "answers.json"
CONFIG_FILE = "config.yml"
RUNTIME_FILES = {"paddle": {"model": "inference.json", "params": "inference.pdiparams"},
                 "onnx": {"model": "model.onnx"}}
# The names a Paddle folder had before they followed Paddle's tools; predict still reads such a folder.
LEGACY_RUNTIME_FILES = {"paddle": {"model": "model.json", "params": "model.pdiparams"}}
OUTPUT_NAME = "logits"
QUESTION_KEY = "ques_ix"
# Keys left out of config.yml: derived or fixed by the command line, paths that need not exist where it is read, and
# the keys that only steer how a training run treats its folder.
_CONFIG_SKIP = set(DERIVED) | set(FIXED) | {"RUN_MODE", "CONFIG", "CKPT_PATH", "GLOVE_PATH", "SUBSET_IIDS",
                                           "OVERWRITE", "RESUME_WEIGHTS_ONLY"}
_MANIFEST_KEYS = ("format", "format_version", "runtime", "model", "dataset", "data_format", "max_token",
                  "token_size", "answer_size", "feature", "inputs", "outputs", "files", "sha256")


class BundleError(ValueError):
    """A missing, incomplete or inconsistent inference folder, or input that does not fit it."""


# ------------------------------------------------------------------------------------------ from a config (export)
def uses_boxes(cfg):
    """Whether the model reads bbox_feat: box features (USE_BBOX_FEAT) or a relation geometry (MMNasNet's)."""
    return cfg.DATA_FORMAT == "vqa" and (bool(cfg.USE_BBOX_FEAT) or registry.model_of(cfg).needs_box_geometry)


def feature_spec(cfg):
    """How a feature file becomes model input, as the training dataset reads it."""
    if cfg.DATA_FORMAT == "clevr":
        rows, dim = cfg.FEAT_SIZE["clevr"]["GRID_FEAT_SIZE"]
        return {"type": "clevr", "ext": features.REGION_EXT, "rows": rows, "dim": dim}
    sizes = cfg.FEAT_SIZE["vqa"]
    rows, dim = sizes["FRCN_FEAT_SIZE"]
    if cfg.FEAT_TYPE == "grid":
        return {"type": "grid", "ext": features.GRID_EXT, "rows": rows, "dim": dim}
    return {"type": "region", "ext": features.REGION_EXT, "rows": rows, "dim": dim,
            "bbox_rows": int(sizes["BBOX_FEAT_SIZE"][0]), "bbox_cols": 5 if cfg.USE_BBOX_FEAT else 4,
            "use_bbox_feat": bool(cfg.USE_BBOX_FEAT), "bbox_normalize": bool(cfg.BBOX_NORMALIZE)}


def input_specs(cfg, max_token):
    """[{name, shape, dtype}] of the inputs the model reads, in order; batch is -1 (dynamic)."""
    feat = feature_spec(cfg)
    image = registry.data_format(cfg.DATA_FORMAT).image_input
    specs = [{"name": image, "shape": [-1, feat["rows"], feat["dim"]], "dtype": "float32"}]
    if uses_boxes(cfg):
        specs.append({"name": "bbox_feat", "shape": [-1, feat["bbox_rows"], feat["bbox_cols"]], "dtype": "float32"})
    specs.append({"name": QUESTION_KEY, "shape": [-1, int(max_token)], "dtype": "int64"})
    return specs


def question_vocabulary(cfg):
    """(token_to_ix, answers in logit order, max_token) exactly as training builds them from cfg.DATA_ROOT."""
    if cfg.DATA_FORMAT == "clevr":   # vocabulary, answer list and max_token all come from the question files
        ds = build_dataset(cfg, "val")
        return dict(ds.token_to_ix), [ds.ix_to_ans[i] for i in range(ds.ans_size)], int(ds.max_token)
    token_to_ix, _ = vqa_data.question_vocabulary(cfg)
    _, ix_to_ans = load_answer_dict()
    return token_to_ix, [ix_to_ans[i] for i in range(len(ix_to_ans))], int(cfg.MAX_TOKEN)


def config_keys(cfg):
    """The config as plain yaml-able values (tuples as lists), without derived keys and paths."""
    return {k: _plain(v) for k, v in sorted(cfg.to_dict().items()) if k not in _CONFIG_SKIP}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def score_kind(cfg):
    """How answer scores are shown: 'sigmoid' of each logit for BCE-trained models (the VQA default), 'softmax' over
    the answers for models trained with a softmax loss (CLEVR's ce, VQA's kld)."""
    return "sigmoid" if cfg.LOSS_FUNC == "bce" else "softmax"


def base_manifest(cfg, runtime, token_to_ix, answers, max_token):
    """The manifest fields that come from the config and vocabulary (the exporter adds the rest)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "runtime": runtime, "model": cfg.MODEL,
            "model_use": cfg.MODEL_USE, "dataset": cfg.DATASET, "data_format": cfg.DATA_FORMAT,
            "max_token": int(max_token), "token_size": len(token_to_ix), "answer_size": len(answers),
            "feature": feature_spec(cfg), "inputs": input_specs(cfg, max_token), "score": score_kind(cfg),
            "created": datetime.datetime.now().isoformat(timespec="seconds")}


def sample_inputs(specs, batch_size, token_size, seed=0):
    """Random inputs for the check: padded image rows and a short question in the last sample, valid boxes."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        shape = [batch_size] + list(spec["shape"][1:])
        if spec["name"] == QUESTION_KEY:
            ids = rng.integers(1, max(token_size, 2), size=shape).astype(np.int64)
            ids[-1, 3:] = 0
            out[spec["name"]] = ids
        elif spec["name"] == "bbox_feat":
            corner = rng.uniform(0, 100, shape[:-1] + [2])
            size = rng.uniform(5, 50, shape[:-1] + [2])
            boxes = np.concatenate([corner, corner + size], axis=-1)
            if shape[-1] == 5:
                boxes = np.concatenate([boxes, size[..., :1] * size[..., 1:]], axis=-1)
            out[spec["name"]] = boxes.astype(np.float32)
        else:
            feat = rng.standard_normal(shape).astype(np.float32)
            feat[-1, shape[1] // 2:] = 0
            out[spec["name"]] = feat
    image, boxes = out[specs[0]["name"]], out.get("bbox_feat")
    if boxes is not None and boxes.shape[1] == image.shape[1]:   # padded image rows have padded boxes, as loaded
        boxes[np.abs(image).sum(-1) == 0] = 0
    return out


# ---------------------------------------------------------------------------------------------------- writing
def check_out_dir(out_dir):
    """BundleError unless ``out_dir`` may receive an export: missing, empty, or an earlier export (our manifest in
    it). A user's folder is never written into: an export replaces config.yml, answers.json, ..."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise BundleError(f"--out {out_dir} is not a folder; give a missing or empty folder for the export")
    if not os.listdir(out_dir):
        return
    try:
        with open(os.path.join(out_dir, MANIFEST_FILE), encoding="utf-8") as f:
            ours = json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise BundleError(f"--out {out_dir} is not an export folder (no {MANIFEST_FILE} of a {FORMAT} export) and "
                          "not empty; it is left as it is: give a missing or empty folder, or an earlier export's")


def staging_dir(out_dir):
    """A fresh folder beside ``out_dir`` (same file system, so the final moves are renames); ``out_dir`` is checked
    first (check_out_dir)."""
    check_out_dir(out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.", suffix=".tmp", dir=parent)


def config_text(cfg):
    """config.yml: the run's keys with a header saying how to reuse them."""
    header = (f"# Config of the exported {cfg.MODEL} / {cfg.DATASET} model. Reuse it with:\n"
              f"#   python run.py --MODEL {cfg.MODEL} --DATASET {cfg.DATASET} --CONFIG {CONFIG_FILE} ...\n")
    return header + yaml.safe_dump(config_keys(cfg), sort_keys=True)


def finish(stage, out_dir, manifest, token_to_ix, answers, config):
    """Write vocab, answers, config (a Config, or config.yml's text) and manifest into ``stage``, then move everything
    into ``out_dir``.

    The old manifest is removed first and the new one renamed in last: an interrupted export leaves a folder that
    predict refuses (no manifest) instead of one that mixes two exports.
    """
    return finish_files(stage, out_dir, manifest, {"vocab": (VOCAB_FILE, token_to_ix),
                                                   "answers": (ANSWERS_FILE, list(answers))}, config)


def runtime_files(manifest):
    """{role: file name} of a manifest's model files: RUNTIME_FILES, or the legacy names a folder written by an
    earlier version lists."""
    current = RUNTIME_FILES[manifest["runtime"]]
    legacy = LEGACY_RUNTIME_FILES.get(manifest["runtime"])
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    if legacy is not None and all(files.get(role) == name for role, name in legacy.items()):
        return legacy
    return current


def finish_files(stage, out_dir, manifest, json_files, config):
    """finish() for any task: ``json_files`` {role: (file name, json value)} are the task's files (VQA: vocab and
    answers; classification: classes, core/tasks/classification.py bundle_contents)."""
    runtime_files = RUNTIME_FILES[manifest["runtime"]]
    for name in runtime_files.values():
        if not os.path.isfile(os.path.join(stage, name)):
            raise FileNotFoundError(f"{os.path.join(stage, name)}: the exporter did not write it")
    for name, value in json_files.values():
        _write_text(os.path.join(stage, name), json.dumps(value, ensure_ascii=False))
    _write_text(os.path.join(stage, CONFIG_FILE), config if isinstance(config, str) else config_text(config))
    files = dict(runtime_files, **{role: name for role, (name, _) in json_files.items()}, config=CONFIG_FILE)
    manifest = dict(manifest, files=files, sha256={n: file_sha256(os.path.join(stage, n)) for n in files.values()})
    check_out_dir(out_dir)                       # again: the folder may have changed during the export
    os.makedirs(out_dir, exist_ok=True)
    old = os.path.join(out_dir, MANIFEST_FILE)
    if os.path.exists(old):
        _note_replaced(old, manifest)
        os.remove(old)
    for name in files.values():
        os.replace(os.path.join(stage, name), os.path.join(out_dir, name))
    for legacy in LEGACY_RUNTIME_FILES.values():   # an earlier version's export of this folder: its model files go
        for name in set(legacy.values()) - set(files.values()):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out_dir, name))
    with atomic_write(old, "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _note_replaced(old_manifest, manifest):
    """Warn when an export is written over the export of another checkpoint (re-exporting the same one is quiet)."""
    try:
        with open(old_manifest, encoding="utf-8") as f:
            before = json.load(f).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        before = None
    if before and before != manifest.get("checkpoint"):
        warnings.warn(f"{os.path.dirname(old_manifest)}: replacing the export of {before} with the export of "
                      f"{manifest.get('checkpoint')} (another --out folder keeps both)", UserWarning, stacklevel=3)


def _write_text(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------------- reading
class Bundle:
    """A checked inference folder: manifest, vocabulary, answers; encodes questions and loads feature files."""

    def __init__(self, model_dir, runtime=None, verify_hashes=True):
        self.dir = model_dir
        if not os.path.isdir(model_dir):
            raise BundleError(f"{model_dir}: no such folder; make one with `python -m deploy export ... --out "
                              f"{model_dir}`")
        self.manifest = m = _read_manifest(self.path(MANIFEST_FILE))
        if runtime is not None and m["runtime"] != runtime:
            raise BundleError(f"{self.path(MANIFEST_FILE)}: this folder holds a {m['runtime']!r} model, "
                              f"expected {runtime!r}")
        self.runtime = m["runtime"]
        self._check_files(verify_hashes)
        self.token_to_ix = _read_vocab(self.path(m["files"]["vocab"]), m["token_size"])
        self.answers = _read_answers(self.path(m["files"]["answers"]), m["answer_size"])
        self.max_token = int(m["max_token"])
        self.feature = m["feature"]
        self.inputs = m["inputs"]
        self.input_names = [spec["name"] for spec in self.inputs]
        self.score = m.get("score", "sigmoid")

    def path(self, name):
        return os.path.join(self.dir, name)

    def file(self, role):
        return self.path(self.manifest["files"][role])

    def _check_files(self, verify_hashes):
        m = self.manifest
        expected = dict(runtime_files(m), vocab=VOCAB_FILE, answers=ANSWERS_FILE, config=CONFIG_FILE)
        for role, name in expected.items():
            if m["files"].get(role) != name:
                raise BundleError(f"{self.path(MANIFEST_FILE)}: files.{role} should be {name!r}, "
                                  f"got {m['files'].get(role)!r}")
            path = self.path(name)
            if not os.path.isfile(path):
                raise BundleError(f"{path}: missing; the folder is incomplete, export it again")
            if verify_hashes and file_sha256(path) != m["sha256"].get(name):
                raise BundleError(f"{path}: its content does not match {self.path(MANIFEST_FILE)} (sha256 differs); "
                                  "the folder mixes files of two exports, export it again")

    # ----- questions and features
    def encode(self, question):
        """(int64 (max_token,), [unknown words]) with the training tokeniser and vocabulary."""
        words = tokenize(question)[:self.max_token]
        return encode(question, self.token_to_ix, self.max_token), [w for w in words if w not in self.token_to_ix]

    def load_features(self, path):
        """{input name: float32 array without the batch axis} from one feature file, as the training dataset."""
        feat = self.feature
        if not os.path.isfile(path):
            raise BundleError(f"{path}: no such feature file")
        if not path.endswith(feat["ext"]):
            raise BundleError(f"{path}: this model reads {feat['type']} features ({feat['ext']} files), "
                              f"got {os.path.splitext(path)[1] or 'a file without extension'}")
        if feat["type"] == "grid":
            return {"frcn_feat": features.load_grid(path, feat["rows"], feat["dim"])}
        if feat["type"] == "clevr":
            return {"grid_feat": features.load_clevr_grid(path, (feat["rows"], feat["dim"]))}
        frcn, bbox = features.load_region(path, (feat["rows"], feat["dim"]), feat["bbox_rows"],
                                          feat["use_bbox_feat"], feat["bbox_normalize"])
        out = {"frcn_feat": frcn}
        if "bbox_feat" in self.input_names:
            out["bbox_feat"] = bbox
        return out

    def make_batch(self, questions, feature_paths):
        """Batched model inputs for parallel lists of question strings and feature files."""
        if len(questions) != len(feature_paths):
            raise BundleError(f"{len(questions)} questions but {len(feature_paths)} feature files")
        rows = [dict(self.load_features(p), **{QUESTION_KEY: self.encode(q)[0]})
                for q, p in zip(questions, feature_paths)]
        return {name: np.stack([r[name] for r in rows]) for name in self.input_names}

    def check_batch(self, batch):
        """Raise BundleError unless ``batch`` has every input with the manifest's shape and dtype."""
        for spec in self.inputs:
            name = spec["name"]
            if name not in batch:
                raise BundleError(f"input {name!r} is missing; this model takes {', '.join(self.input_names)}")
            arr = np.asarray(batch[name])
            want = tuple(spec["shape"][1:])
            if arr.ndim != len(spec["shape"]) or tuple(arr.shape[1:]) != want:
                raise BundleError(f"input {name!r}: expected shape (batch, {', '.join(map(str, want))}), "
                                  f"got {arr.shape}")
            if arr.dtype != np.dtype(spec["dtype"]):
                raise BundleError(f"input {name!r}: expected {spec['dtype']}, got {arr.dtype}")

    def top_answers(self, logits, k=5):
        """Per row: [(answer, score)] of the k largest logits, best first; score per the manifest's 'score'."""
        logits = np.asarray(logits, np.float64)
        k = max(1, min(int(k), logits.shape[1]))
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        if self.score == "softmax":
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = exp / exp.sum(axis=1, keepdims=True)
        else:
            scores = 1.0 / (1.0 + np.exp(-logits))
        return [[(self.answers[j], float(scores[i, j])) for j in row] for i, row in enumerate(order)]

    def best_answers(self, logits):
        return [self.answers[int(j)] for j in np.asarray(logits).argmax(axis=1)]


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; the folder is incomplete, export it again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid json ({exc}); expected {what}") from None


def _read_manifest(path):
    if not os.path.isfile(path):
        raise BundleError(f"{path}: missing; this is not a complete export folder (the exporter writes the "
                          "manifest last), export it again")
    m = _read_json(path, "the export manifest")
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest (format {m.get('format') if isinstance(m, dict) else m!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: format_version {m.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    missing = [k for k in _MANIFEST_KEYS if k not in m]
    if missing:
        raise BundleError(f"{path}: lacks {', '.join(missing)}")
    if m["runtime"] not in RUNTIME_FILES:
        raise BundleError(f"{path}: unknown runtime {m['runtime']!r}; expected {' or '.join(RUNTIME_FILES)}")
    if m.get("score", "sigmoid") not in ("sigmoid", "softmax"):
        raise BundleError(f"{path}: score {m['score']!r}; expected 'sigmoid' or 'softmax'")
    names = [spec.get("name") for spec in m["inputs"]] if isinstance(m["inputs"], list) else None
    if not names or QUESTION_KEY not in names:
        raise BundleError(f"{path}: 'inputs' must list the model inputs, {QUESTION_KEY} among them")
    return m


def _read_vocab(path, token_size):
    vocab = _read_json(path, "a {token: index} object")
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise BundleError(f"{path}: expected a {{token: index}} object")
    if len(vocab) != token_size or sorted(vocab.values()) != list(range(token_size)):
        raise BundleError(f"{path}: expected indices 0..{token_size - 1} (token_size in manifest.json), "
                          f"got {len(vocab)} tokens")
    if vocab.get("UNK") != UNK:
        raise BundleError(f"{path}: 'UNK' must have index {UNK}")
    return vocab


def _read_answers(path, answer_size):
    answers = _read_json(path, "a list of answer strings")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise BundleError(f"{path}: expected a list of answer strings")
    if len(answers) != answer_size:
        raise BundleError(f"{path}: {len(answers)} answers, but manifest.json says answer_size {answer_size}")
    return answers
