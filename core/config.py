"""Run configuration: defaults < configs/<dataset>/<model>.yml < optional extra yml < overrides, validated once.

Key names are the original openvqa/TRAR names, so an original yml file loads as an extra config. Values from yml
files and the command line are parsed without eval(): tuples in strings go through ast.literal_eval.
"""
from __future__ import annotations

import ast
import copy as _copy
import datetime
import difflib
import math
import os
from collections.abc import Mapping
from typing import Any

import yaml

from core import registry
from core.checkpoints import EPOCH_ALIASES
from core.text import NotUtf8, read_utf8

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# The registry's names, as config.py has always exported them (core/registry.py is the list).
# Model name (--MODEL, configs/<dataset>/<model>.yml) -> MODEL_USE (the backends' model module).
MODELS = {name: spec.model_use for name, spec in registry.MODELS.items()}
# Dataset name (--DATASET) -> DATA_FORMAT (the loader format; also the key into FEAT_SIZE).
DATASETS = {name: spec.data_format for name, spec in registry.DATASETS.items()}
# The names in backends.BACKENDS (core does not import backends).
BACKENDS = ("paddle", "torch")
OPTIMIZERS = ("Adam", "SGD")
LR_SCHEDULES = ("openvqa", "cosine", "linear")
RUN_MODES = ("train", "val", "test", "export")
VQA_ANSWER_TYPES = ("yes/no", "number", "other")

DEFAULTS = {
    # Network (openvqa model_cfgs + yml)
    "LAYER": 6, "HIDDEN_SIZE": 512, "FF_SIZE": 2048, "MULTI_HEAD": 8, "DROPOUT_R": 0.1,
    "FLAT_MLP_SIZE": 512, "FLAT_GLIMPSES": 1, "FLAT_OUT_SIZE": 1024,
    # Word embeddings: GLOVE_PATH is a GloVe .txt or .npy; GLOVE_SPACY_MODEL the name of an installed spaCy vectors
    # model
    "WORD_EMBED_SIZE": 300, "USE_GLOVE": True, "GLOVE_PATH": None, "GLOVE_SPACY_MODEL": None,
    # Words read per VQA-format question (openvqa: 14; mcan-vqa's key name; CLEVR reads its longest question)
    "MAX_TOKEN": 14,
    # Image features: FEAT_SIZE[DATA_FORMAT][name] = (rows padded/truncated to, feature width);
    # FEAT_TYPE 'grid' = TRAR .npy grid cells, 'region' = openvqa bottom-up .npz boxes
    "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": (64, 2048), "BBOX_FEAT_SIZE": (100, 5)},
                  "clevr": {"GRID_FEAT_SIZE": (196, 1024)}},
    "FEAT_TYPE": "grid", "USE_BBOX_FEAT": False, "BBOX_NORMALIZE": True, "BBOXFEAT_EMB_SIZE": 2048,
    "USE_AUX_FEAT": False,
    # Training
    "BATCH_SIZE": 64, "LR_BASE": 1e-4, "LR_DECAY_R": 0.2, "LR_DECAY_LIST": [10, 12], "WARMUP_EPOCH": 3,
    "MAX_EPOCH": 13, "GRAD_NORM_CLIP": -1.0, "GRAD_ACCU_STEPS": 1, "LOSS_FUNC": "bce", "LOSS_REDUCTION": "sum",
    "OPT": "Adam", "OPT_PARAMS": {"betas": (0.9, 0.98), "eps": 1e-9}, "AMP": False,
    # Run (MODEL, DATASET and RUN_MODE come from load_config's arguments; MODEL_USE and DATA_FORMAT from the registry)
    "RUN_MODE": "train", "MODEL": None, "MODEL_USE": None, "DATASET": None, "DATA_FORMAT": None,
    "BACKEND": "paddle", "TRAIN_SPLIT": "train", "EVAL_EVERY_EPOCH": True, "TEST_SAVE_PRED": False,
    "GPU": "", "SEED": 0, "VERSION": None, "CKPT_VERSION": None, "CKPT_EPOCH": 0, "CKPT_PATH": None,
    "RESUME": False, "NUM_WORKERS": None, "PIN_MEM": False, "VERBOSE": True, "CONFIG": None,
    # A new training run refuses a VERSION whose run folder or log exists; OVERWRITE=True replaces that run instead
    # (core/runfolder.py). RESUME_WEIGHTS_ONLY=True resumes a checkpoint without optimizer state, optimizer afresh.
    "OVERWRITE": False, "RESUME_WEIGHTS_ONLY": False,
    # --GPU naming a device the backend cannot use is an error; ALLOW_CPU_FALLBACK=True: the CPU after a warning
    "ALLOW_CPU_FALLBACK": False,
    # Keep only the last N epochs' checkpoint files (None: all); best and latest are always kept (core/ckpt_policy.py)
    "CKPT_KEEP_LAST": None,
    # Watching a run (core/progress.py): a line every LOG_EVERY optimizer steps (0: none) in the run log, and on the
    # console unless VERBOSE is False; SCALAR_LOGS=False: no VisualDL / TensorBoard scalars even when installed
    "LOG_EVERY": 100, "SCALAR_LOGS": True,
    # Paths (relative to the working directory; a dataset's spec may give DATA_ROOT another default)
    "DATA_ROOT": "data", "RESULTS_ROOT": "results", "CKPTS_ROOT": "ckpts",
    # Subsets for small machines: first N questions per split, an image-id list (file or list), answer types
    "SUBSET": None, "SUBSET_IIDS": None, "SUBSET_ANS_TYPES": None, "SKIP_MISSING_FEATS": False,
    # A memory-mapped feature store (python -m bench.feature_store) read instead of one file per image (VQA formats)
    "FEAT_STORE": None,
    # Image classification: the side the images are resized to (and the model's input size), and a folder for the
    # decoded-image cache (core/data/image_cache.py; None: decode every epoch)
    "IMG_SIZE": 224, "IMAGE_CACHE": None,
    # The learning rate per optimizer step: 'openvqa' (WARMUP_EPOCH, LR_DECAY_LIST), or WARMUP_STEPS of linear warm-up
    # then 'cosine' or 'linear' decay to 0 at the last step (the ViT originals' schedules; core/schedules.py)
    "LR_SCHEDULE": "openvqa", "WARMUP_STEPS": 0,
}

# Computed in _finalize; never given. Each with what it comes from, for the error that refuses it.
DERIVED_FROM = {
    "SPLIT": "TRAIN_SPLIT (--SPLIT) for training; val and test are fixed",
    "SUB_BATCH_SIZE": "BATCH_SIZE // GRAD_ACCU_STEPS (--BS, --ACCU)",
    "EVAL_BATCH_SIZE": "SUB_BATCH_SIZE // 2, i.e. BATCH_SIZE // GRAD_ACCU_STEPS // 2 (--BS, --ACCU)",
    "N_GPU": "the number of ids in GPU (--GPU)",
    "DATA_FORMAT": "the dataset's format (--DATASET)",
}
DERIVED = tuple(DERIVED_FROM)
# Fixed by load_config's arguments; MODEL_USE may appear in a yml but must agree with MODELS.
FIXED = ("MODEL", "DATASET")

# Expected kind per key where the default value does not tell it (None defaults, list items).
_KINDS = {
    "GLOVE_PATH": (str,), "GLOVE_SPACY_MODEL": (str,), "CKPT_PATH": (str,), "CONFIG": (str,),
    "VERSION": (str,), "CKPT_VERSION": (str,), "MODEL_USE": (str,),
    "SUBSET": (int,), "SUBSET_IIDS": (str, list), "SUBSET_ANS_TYPES": (list,), "NUM_WORKERS": (int,),
    "FEAT_STORE": (str,), "IMAGE_CACHE": (str,), "CKPT_KEEP_LAST": (int,),
    "CKPT_EPOCH": (int, str),   # an epoch number, or 'best' / 'latest' (core/checkpoints.EPOCH_ALIASES)
}
_LIST_ITEMS = {"LR_DECAY_LIST": int, "SUBSET_ANS_TYPES": str}
# Names that end up in file names; a yml or --SET may give them as numbers.
_NAME_KEYS = {"VERSION", "CKPT_VERSION", "GPU"}
# Lower bounds of numeric keys.
_AT_LEAST = {
    "LAYER": 1, "HIDDEN_SIZE": 1, "FF_SIZE": 1, "MULTI_HEAD": 1, "FLAT_MLP_SIZE": 1, "FLAT_GLIMPSES": 1,
    "FLAT_OUT_SIZE": 1, "WORD_EMBED_SIZE": 1, "MAX_TOKEN": 1, "BBOXFEAT_EMB_SIZE": 1, "BATCH_SIZE": 1,
    "GRAD_ACCU_STEPS": 1, "MAX_EPOCH": 1, "WARMUP_EPOCH": 0, "NUM_WORKERS": 0, "CKPT_EPOCH": 0, "SEED": 0,
    "SUBSET": 1, "DROPOUT_R": 0.0, "LR_BASE": 0.0, "LR_DECAY_R": 0.0, "IMG_SIZE": 1, "WARMUP_STEPS": 0,
    "CKPT_KEEP_LAST": 1, "LOG_EVERY": 0,
}
_CHOICES = {
    "LOSS_REDUCTION": ("sum", "mean"), "FEAT_TYPE": ("grid", "region"), "RUN_MODE": RUN_MODES,
    "BACKEND": BACKENDS, "OPT": OPTIMIZERS, "LR_SCHEDULE": LR_SCHEDULES,
}


def _add_model_settings():
    """Every registry model's keys (core/specs/<MODEL_USE>.py) join the known keys, so a config of any model holds
    them all (as the one DEFAULTS dict did); the checks on their values apply to every config, as before."""
    generic = set(DEFAULTS)
    for module in dict.fromkeys(spec.settings for spec in registry.MODELS.values()):
        for key, default in getattr(module, "DEFAULTS", {}).items():
            if key in generic or (key in DEFAULTS and DEFAULTS[key] != default):
                raise ValueError(f"{module.__name__}: {key} is already a key with another default "
                                 "(core/config.py or another model's settings)")
            DEFAULTS[key] = default
        for table, name in ((_KINDS, "KINDS"), (_LIST_ITEMS, "LIST_ITEMS"), (_AT_LEAST, "AT_LEAST"),
                            (_CHOICES, "CHOICES")):
            table.update(getattr(module, name, {}))


_add_model_settings()


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key (and the file it came from)."""


def _where(source):
    return f" (in {source})" if source and source not in ("defaults", "overrides") else ""


def _suggest(name, known):
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _kind_of(key):
    if key in _KINDS:
        return _KINDS[key]
    default = DEFAULTS[key]
    return (type(default),)


def _coerce(key, value, source):
    """Check one value against its key's kind; return it normalised. FEAT_SIZE merges in _merge_layer."""
    where = _where(source)
    if key in DERIVED:
        raise ConfigError(f"{key}: derived from {DERIVED_FROM[key]}, so it cannot be set{where}; set those instead")
    if key not in DEFAULTS:
        raise ConfigError(f"{key}: unknown key{where}{_suggest(key, list(DEFAULTS) + list(DERIVED))}")
    if key in FIXED:
        raise ConfigError(f"{key} is chosen by --{key} (load_config's {key.lower()} argument){where}")
    if value is None:
        if DEFAULTS[key] is None:  # keys whose default is None may be reset to it
            return None
        raise ConfigError(f"{key}: must not be empty{where}")
    if key == "OPT_PARAMS":
        return _coerce_opt_params(value, source)
    kinds = _kind_of(key)
    if key in _NAME_KEYS and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if float in kinds:
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}{where}") from None
            return _finite(key, number, where)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(key, float(value), where)
        raise ConfigError(f"{key}: expected a number, got {value!r} ({type(value).__name__}){where}")
    # a bool is an int in Python, but not a valid int here
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join({int: "an integer", bool: "True/False", str: "a string", list: "a list"}[k]
                            for k in kinds)
        raise ConfigError(f"{key}: expected {names}, got {value!r} ({type(value).__name__}){where}")
    if isinstance(value, list) and key in _LIST_ITEMS:
        item = _LIST_ITEMS[key]
        for v in value:
            if isinstance(v, bool) or not isinstance(v, item):
                raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}{where}")
        value = list(value)
    if key == "MODEL_USE":
        value = value.lower()  # the original yml files say MODEL_USE: TRAR
    return value


def _finite(key, number, where):
    """A NaN or an infinity passes every comparison a bound check makes (nan < 0 is False): refused here, for every
    float key (LR_BASE=.nan trained on NaN weights)."""
    if not math.isfinite(number):
        raise ConfigError(f"{key}: must be a finite number, got {number}{where}")
    return number


def _literal(key, value, source):
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise ConfigError(f"{key}: cannot read {value!r} as a Python literal{_where(source)}") from None


def _coerce_feat_size(value, base, source):
    """Merge a (possibly partial) FEAT_SIZE mapping into ``base``; leaves become tuples of two positive ints."""
    where = _where(source)
    if not isinstance(value, dict):
        raise ConfigError(f"FEAT_SIZE: expected a mapping like {{vqa: {{FRCN_FEAT_SIZE: [64, 2048]}}}}{where}")
    merged = _copy.deepcopy(base)
    for fmt, sizes in value.items():
        if fmt not in merged:
            raise ConfigError(f"FEAT_SIZE.{fmt}: unknown dataset format{where}{_suggest(str(fmt), list(merged))}")
        if not isinstance(sizes, dict):
            raise ConfigError(f"FEAT_SIZE.{fmt}: expected a mapping of feature name to (rows, width){where}")
        for name, size in sizes.items():
            key = f"FEAT_SIZE.{fmt}.{name}"
            if name not in merged[fmt]:
                raise ConfigError(f"{key}: unknown key{where}{_suggest(str(name), list(merged[fmt]))}")
            size = _literal(key, size, source)
            if (not isinstance(size, (list, tuple)) or len(size) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)):
                raise ConfigError(f"{key}: expected two positive integers (rows, width), got {size!r}{where}")
            merged[fmt][name] = tuple(int(v) for v in size)
    return merged


def _coerce_opt_params(value, source):
    where = _where(source)
    if not isinstance(value, dict):
        raise ConfigError(f"OPT_PARAMS: expected a mapping like {{betas: '(0.9, 0.98)', eps: '1e-9'}}{where}")
    params = {}
    for name, v in value.items():
        v = _literal(f"OPT_PARAMS.{name}", v, source)
        for number in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(number, float):
                _finite(f"OPT_PARAMS.{name}", number, where)
        params[str(name)] = tuple(v) if isinstance(v, list) else v
    return params


def _merge_layer(values, origin, explicit, layer, source):
    for key, value in layer.items():
        key = str(key)
        if key == "FEAT_SIZE":
            value = _coerce_feat_size(value, values["FEAT_SIZE"], source)
        else:
            value = _coerce(key, value, source)
        values[key] = value
        origin[key] = source
        explicit.add(key)


def _read_yml(path, key_hint):
    if not os.path.isfile(path):
        raise ConfigError(f"{key_hint}: no such file {path}")
    try:
        data = yaml.safe_load(read_utf8(path))
    except NotUtf8 as exc:
        raise ConfigError(f"{key_hint}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{line} {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of KEY: value, got {type(data).__name__}")
    return data


def model_config_path(model: str, dataset: str) -> str:
    """configs/<dataset>/<model>.yml; a ConfigError listing the shipped files when the pair has none."""
    for lookup, name in ((registry.model, model), (registry.dataset, dataset)):
        try:
            lookup(name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    path = os.path.join(CONFIGS_DIR, dataset, f"{model}.yml")
    if not os.path.isfile(path):
        shipped = sorted(f"{d}/{f}" for d in os.listdir(CONFIGS_DIR) if os.path.isdir(os.path.join(CONFIGS_DIR, d))
                         for f in os.listdir(os.path.join(CONFIGS_DIR, d)) if f.endswith(".yml"))
        raise ConfigError(f"MODEL/DATASET: no config {path} for {model} on {dataset}; "
                          f"configs that exist: {', '.join(shipped)}")
    return path


def load_config(model: str, dataset: str, overrides: Mapping[str, Any] | None = None,
                run_mode: str = "train") -> Config:
    """Build the validated Config of one run. ``overrides`` may hold any known key, plus CONFIG (an extra yml)."""
    path = model_config_path(model, dataset)
    values = _copy.deepcopy(DEFAULTS)
    values.update(MODEL=model, DATASET=dataset, RUN_MODE=run_mode)
    if registry.dataset(dataset).data_root is not None:
        values["DATA_ROOT"] = registry.dataset(dataset).data_root
    origin = {key: "defaults" for key in values}
    explicit = set()
    overrides = dict(overrides or {})
    for key in FIXED:
        if key in overrides and overrides[key] == values[key]:
            del overrides[key]
    rel = os.path.relpath(path, os.path.dirname(CONFIGS_DIR))
    _merge_layer(values, origin, explicit, _read_yml(path, "MODEL"), rel)
    extra = overrides.get("CONFIG")
    if extra is not None:
        if not isinstance(extra, str):
            raise ConfigError(f"CONFIG: expected a path to a yml file, got {extra!r}")
        layer = _read_yml(extra, "CONFIG")
        if "CONFIG" in layer:
            raise ConfigError(f"CONFIG: an extra config cannot name another one (in {extra})")
        _merge_layer(values, origin, explicit, layer, extra)
    _merge_layer(values, origin, explicit, overrides, "overrides")
    cfg = _build(values, origin, explicit)
    _check_request(cfg)
    return cfg


def _build(values, origin, explicit):
    values = _copy.deepcopy(values)
    _validate(values, origin)
    inputs = _copy.deepcopy(values)
    _finalize(values, explicit)
    return Config(values, inputs, origin, explicit)


def _fail(key, message, origin):
    raise ConfigError(f"{key}: {message}{_where(origin.get(key))}")


def _validate(v, origin):
    """Cross-key checks on merged values; each failure is one line naming the key."""
    model, dataset = v["MODEL"], v["DATASET"]
    spec, data = registry.model(model), registry.dataset(dataset)
    fmt = data.data_format
    if v["MODEL_USE"] is not None and v["MODEL_USE"] != spec.model_use:
        _fail("MODEL_USE", f"{v['MODEL_USE']!r} does not match model {model} (uses {spec.model_use!r})", origin)
    v["MODEL_USE"] = spec.model_use
    v["DATA_FORMAT"] = fmt
    derive = getattr(spec.settings, "derive", None)
    if derive is not None:   # keys the model computes from others unless given (ViT's IMG_SCALE, RWSAN's FF_SIZE)
        derive(v, {key for key, source in origin.items() if source != "defaults"})
    for key, choices in _CHOICES.items():
        if v[key] not in choices:
            _fail(key, f"{v[key]!r} is not one of {', '.join(map(str, choices))}", origin)
    if isinstance(v["CKPT_EPOCH"], str) and v["CKPT_EPOCH"] not in EPOCH_ALIASES:
        _fail("CKPT_EPOCH", f"expected an epoch number or one of {', '.join(EPOCH_ALIASES)}, got "
                            f"{v['CKPT_EPOCH']!r}", origin)
    for key, low in _AT_LEAST.items():
        if v[key] is not None and not isinstance(v[key], str) and v[key] < low:
            _fail(key, f"must be >= {low}, got {v[key]}", origin)
    if not v["DROPOUT_R"] < 1:
        _fail("DROPOUT_R", f"must be below 1, got {v['DROPOUT_R']}", origin)
    if v["BATCH_SIZE"] % v["GRAD_ACCU_STEPS"]:
        _fail("BATCH_SIZE", f"{v['BATCH_SIZE']} is not divisible by GRAD_ACCU_STEPS={v['GRAD_ACCU_STEPS']}", origin)
    if v["HIDDEN_SIZE"] % v["MULTI_HEAD"]:
        _fail("HIDDEN_SIZE", f"{v['HIDDEN_SIZE']} is not divisible by MULTI_HEAD={v['MULTI_HEAD']}", origin)
    if v["LOSS_FUNC"] not in data.loss_funcs:
        _fail("LOSS_FUNC", f"{v['LOSS_FUNC']!r} does not suit dataset {dataset}; "
                           f"expected {' or '.join(data.loss_funcs)}", origin)
    parts = v["TRAIN_SPLIT"].split("+")
    bad = [p for p in parts if p not in data.train_splits]
    if bad or len(set(parts)) != len(parts):
        _fail("TRAIN_SPLIT", f"{v['TRAIN_SPLIT']!r}: parts joined by '+' from "
                             f"{', '.join(data.train_splits)} (each once) for dataset {dataset}", origin)
    for key in ("VERSION", "CKPT_VERSION"):
        name = v[key]
        if name is not None and (not name or "/" in name or os.sep in name or name in (".", "..")):
            _fail(key, f"{name!r} is not usable in a file name", origin)
    _gpu_ids(v["GPU"], origin)
    if v["SUBSET_ANS_TYPES"] is not None:
        if fmt != "vqa":
            _fail("SUBSET_ANS_TYPES", f"dataset {dataset} has no answer types", origin)
        unknown = [t for t in v["SUBSET_ANS_TYPES"] if t not in VQA_ANSWER_TYPES]
        if unknown or not v["SUBSET_ANS_TYPES"]:
            _fail("SUBSET_ANS_TYPES", f"{v['SUBSET_ANS_TYPES']!r}: expected some of {', '.join(VQA_ANSWER_TYPES)}",
                  origin)
    if v["USE_BBOX_FEAT"] and (fmt != "vqa" or v["FEAT_TYPE"] != "region"):
        _fail("USE_BBOX_FEAT", "box features exist only for vqa with FEAT_TYPE 'region'", origin)
    if spec.task != data.task:
        _fail("MODEL", f"{model} is a {spec.task} model; dataset {dataset} is a {data.task} dataset", origin)
    spec.settings.validate(v, lambda key, message: _fail(key, message, origin))


def _gpu_ids(gpu, origin):
    ids = [p.strip() for p in gpu.split(",") if p.strip()]
    if any(not p.isdigit() for p in ids):
        _fail("GPU", f"{gpu!r}: expected device numbers like '0' or '0,1' (empty for CPU)", origin)
    return ids


def _finalize(v, explicit):
    """Derived values, computed as the original proc() does."""
    v["SPLIT"] = {"train": v["TRAIN_SPLIT"], "val": "val", "test": "test"}
    v["SUB_BATCH_SIZE"] = v["BATCH_SIZE"] // v["GRAD_ACCU_STEPS"]
    v["EVAL_BATCH_SIZE"] = max(1, v["SUB_BATCH_SIZE"] // 2)
    if "val" in v["TRAIN_SPLIT"].split("+") or v["RUN_MODE"] != "train":
        v["EVAL_EVERY_EPOCH"] = False
    if v["RUN_MODE"] != "test":
        v["TEST_SAVE_PRED"] = False
    v["N_GPU"] = len(_gpu_ids(v["GPU"], {}))
    if "VERSION" not in explicit or v["VERSION"] is None:
        resumed = resumed_run_name(v, explicit)
        if resumed is not None:
            v["VERSION"] = resumed
        elif "SEED" in explicit:
            v["VERSION"] = str(v["SEED"])
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            v["VERSION"] = f"{v['MODEL']}_{v['DATASET']}_{stamp}"
    if "CKPT_VERSION" not in explicit or v["CKPT_VERSION"] is None:
        if v["CKPT_PATH"] is not None:
            v["CKPT_VERSION"] = _name_of_checkpoint_file(v["CKPT_PATH"])
        else:
            v["CKPT_VERSION"] = v["VERSION"]


def resumed_run_name(v, explicit):
    """The run a resumed training run continues when no VERSION is given: --CKPT_V's, or that of the run folder
    <CKPTS_ROOT>/ckpt_<name> a --CKPT_PATH file sits in; None otherwise (a file from elsewhere starts a new run)."""
    if v["RUN_MODE"] != "train" or not v["RESUME"]:
        return None
    if v["CKPT_PATH"] is None:
        return v["CKPT_VERSION"] if "CKPT_VERSION" in explicit and v["CKPT_VERSION"] is not None else None
    folder = os.path.dirname(os.path.realpath(v["CKPT_PATH"]))
    name = os.path.basename(folder)
    if name.startswith("ckpt_") and len(name) > len("ckpt_") and \
            os.path.dirname(folder) == os.path.realpath(v["CKPTS_ROOT"]):
        return name[len("ckpt_"):]
    return None


def _name_of_checkpoint_file(path):
    """The run name of a CKPT_PATH run: the file's name, after its run's name when it sits in a run folder
    (ckpts/ckpt_1/epoch13.pkl -> '1_epoch13', the name --CKPT_V=1 --CKPT_E=13 gives its outputs;
    downloads/epoch13.pkl -> 'epoch13')."""
    stem = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return f"{folder[len('ckpt_'):]}_{stem}" if folder.startswith("ckpt_") and len(folder) > len("ckpt_") else stem


def _check_request(cfg):
    """What a run from the command line needs on top of a consistent config: its checkpoint and named files."""
    if cfg.CKPT_PATH is None and cfg.CKPT_EPOCH and (cfg.RUN_MODE != "train" or cfg.RESUME) \
            and not {"CKPT_VERSION", "VERSION", "SEED"} & cfg._explicit:
        raise ConfigError(f"CKPT_VERSION: --CKPT_E {cfg.CKPT_EPOCH} needs --CKPT_V NAME, the run whose checkpoint to "
                          "load (it defaults to --VERSION, or to the --SEED value, and neither was given)")
    # a checkpoint asked for (flags or overrides, not a saved config.yml) where the run would not read it
    asked = {key for key in ("CKPT_PATH", "CKPT_EPOCH") if cfg._origin.get(key) == "overrides"}
    if cfg.CKPT_PATH is not None and asked == {"CKPT_PATH", "CKPT_EPOCH"}:
        raise ConfigError(f"CKPT_EPOCH: --CKPT_E picks an epoch file of the --CKPT_V run; with --CKPT_PATH "
                          f"{cfg.CKPT_PATH} it would not be used: give one or the other")
    if cfg.RUN_MODE == "train" and not cfg.RESUME and (cfg.CKPT_PATH is not None or cfg.CKPT_EPOCH) and asked:
        given = "--CKPT_PATH" if cfg.CKPT_PATH is not None else "--CKPT_V/--CKPT_E"
        raise ConfigError(f"RESUME: training reads {given} only to resume; add --RESUME=True to continue that run, "
                          "or drop them to train from scratch")
    if cfg.RUN_MODE != "train" and cfg.RESUME and cfg._origin.get("RESUME") == "overrides":
        raise ConfigError(f"RESUME: only training resumes; a {cfg.RUN_MODE} run loads its checkpoint "
                          "(--CKPT_V/--CKPT_E or --CKPT_PATH) anyway: drop --RESUME")
    if cfg.CKPT_PATH is None and cfg.CKPT_EPOCH == 0 and "CKPT_EPOCH" in asked:
        raise ConfigError("CKPT_EPOCH: --CKPT_E 0 names no checkpoint; epochs are numbered from 1 (epoch1.pkl is "
                          "the first saved)")
    if cfg.CKPT_PATH is None and cfg.CKPT_EPOCH == 0:
        if cfg.RUN_MODE in ("val", "test"):
            raise ConfigError(f"CKPT_EPOCH: a {cfg.RUN_MODE} run needs a checkpoint; "
                              f"give --CKPT_V and --CKPT_E, or --CKPT_PATH")
        if cfg.RUN_MODE == "train" and cfg.RESUME:
            raise ConfigError("RESUME: resuming needs a checkpoint; give --CKPT_V and --CKPT_E, or --CKPT_PATH")
    named = [("CKPT_PATH", cfg.CKPT_PATH), ("GLOVE_PATH", cfg.GLOVE_PATH if cfg.USE_GLOVE else None),
             ("SUBSET_IIDS", cfg.SUBSET_IIDS if isinstance(cfg.SUBSET_IIDS, str) else None)]
    for key, path in named:
        if path is not None and os.path.isdir(path):
            example = f", e.g. {os.path.join(path, 'epoch<N>.pkl')}" if key == "CKPT_PATH" else ""
            raise ConfigError(f"{key}: {path} is a folder; expected a file in it{example}")
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{key}: no such file {path}")
    if cfg.FEAT_STORE is not None and not os.path.isfile(os.path.join(cfg.FEAT_STORE, "meta.json")):
        raise ConfigError(f"FEAT_STORE: {cfg.FEAT_STORE} is not a feature store (no meta.json); build one with "
                          "`python -m core.data.feature_store`")


class Config:
    """Read-only run configuration: ``cfg.HIDDEN_SIZE``; change values with ``cfg.copy(KEY=value)``."""

    def __init__(self, values, inputs, origin, explicit):
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_inputs", inputs)
        object.__setattr__(self, "_origin", dict(origin))
        object.__setattr__(self, "_explicit", frozenset(explicit))

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values")
        if values is None or name not in values:
            raise AttributeError(f"Config has no key {name!r}" + _suggest(name, list(values or ())))
        return values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Config is read-only; use cfg.copy({name}=...)")

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def to_dict(self) -> dict[str, Any]:
        return _copy.deepcopy(self._values)

    def copy(self, **overrides: Any) -> Config:
        """A new Config with ``overrides`` applied and everything re-validated and re-derived.

        The run keeps its VERSION unless one is given. load_config's checkpoint-presence check is not repeated, so
        the engine can derive a RUN_MODE='val' config from a training one.
        """
        values = _copy.deepcopy(self._inputs)
        origin = dict(self._origin)
        explicit = set(self._explicit) | {"VERSION"}
        values["VERSION"] = self._values["VERSION"]
        _merge_layer(values, origin, explicit, overrides, "overrides")
        return _build(values, origin, explicit)

    def __str__(self):
        return "".join("{ %-17s }->%s\n" % (name, self._values[name]) for name in sorted(self._values))

    def __repr__(self):
        v = self._values
        return f"Config(MODEL={v['MODEL']!r}, DATASET={v['DATASET']!r}, RUN_MODE={v['RUN_MODE']!r}, " \
               f"VERSION={v['VERSION']!r})"
