"""The openvqa command line (--RUN, --MODEL, --DATASET, ...) plus --backend, mapped onto config keys.

Values are parsed without eval(); stray quotes (``--RUN="'train'"`` from some shells) are stripped.
Flags left unset do not reach the config, so the yml and the defaults decide.
"""
import argparse

import yaml

from core import registry
from core.checkpoints import EPOCH_ALIASES
from core.config import BACKENDS, RUN_MODES, load_config

_TRUE = ("true", "1")
_FALSE = ("false", "0")


def _unquote(text):
    text = text.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        text = text[1:-1].strip()
    return text


def parse_bool(text):
    """'True'/'False'/'true'/'false'/'1'/'0' (quotes allowed) -> bool; anything else is an argparse error."""
    if isinstance(text, bool):
        return text
    word = _unquote(text).lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _int(text):
    try:
        return int(_unquote(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _epoch(text):
    """--CKPT_E: an epoch number, or 'best' / 'latest' (the copies a run folder keeps: core/ckpt_policy.py)."""
    value = _unquote(text)
    if value in EPOCH_ALIASES:
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an epoch number or {' / '.join(EPOCH_ALIASES)}, "
                                         f"got {text!r}") from None


def _comma_list(text):
    items = [item.strip() for item in _unquote(text).split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def key_value(text):
    key, sep, value = _unquote(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot read the value of {text!r} as YAML") from None


# (group title, [(flag, dest, type, help)]); a type of parse_bool makes the flag accept a bare form meaning True.
_GROUPS = [
    ("what to run", [
        ("--RUN", "RUN_MODE", _unquote, "train, val, test or export (required)"),
        ("--MODEL", "MODEL", _unquote, "model: configs/<DATASET>/<MODEL>.yml (required)"),
        ("--DATASET", "DATASET", _unquote, "dataset (required)"),
        ("--backend", "backend", _unquote, "framework to run on (default: paddle)"),
        ("--CONFIG", "CONFIG", _unquote, "extra yml merged over the model config"),
        ("--SET", "SET", key_value, "KEY=VALUE for any config key, value read as YAML (repeatable)"),
    ]),
    ("training", [
        ("--SPLIT", "TRAIN_SPLIT", _unquote, "training splits joined by '+', e.g. train+val+vg (default: train)"),
        ("--BS", "BATCH_SIZE", _int, "batch size"),
        ("--ACCU", "GRAD_ACCU_STEPS", _int, "gradient accumulation steps; BATCH_SIZE must divide by it"),
        ("--MAX_EPOCH", "MAX_EPOCH", _int, "number of training epochs"),
        ("--SEED", "SEED", _int, "random seed; without --VERSION it also names the run"),
        ("--EVAL_EE", "EVAL_EVERY_EPOCH", parse_bool, "evaluate on val after every epoch (True/False)"),
        ("--AMP", "AMP", parse_bool, "mixed precision on GPU (True/False)"),
    ]),
    ("run names and checkpoints", [
        ("--VERSION", "VERSION", _unquote, "name of this run (default: <MODEL>_<DATASET>_<time>; a resumed run: the "
                                           "run it resumes, whose folder, log and figures it continues)"),
        ("--RESUME", "RESUME", parse_bool, "resume training from --CKPT_V/--CKPT_E or --CKPT_PATH (True/False); "
                                           "without --VERSION it continues that run under its name"),
        ("--CKPT_V", "CKPT_VERSION", _unquote, "run name of the checkpoint to load"),
        ("--CKPT_E", "CKPT_EPOCH", _epoch, "epoch of the checkpoint to load, or best / latest (the run "
                                            "folder's copies of the best-validated and the last epoch)"),
        ("--CKPT_PATH", "CKPT_PATH", _unquote, "checkpoint file to load (instead of --CKPT_V/--CKPT_E)"),
        ("--SAVE_PRED", "TEST_SAVE_PRED", parse_bool, "test runs: also save the raw predictions (True/False)"),
    ]),
    ("data and subsets", [
        ("--DATA_ROOT", "DATA_ROOT", _unquote, "data folder (default: data, data/demo for the demo dataset)"),
        ("--SUBSET", "SUBSET", _int,
         "use only the first N questions of the splits together, in their order (train+val: train's first)"),
        ("--SUBSET_IIDS", "SUBSET_IIDS", _unquote, "file of image ids to keep (text, one per line, or json)"),
        ("--SUBSET_ANS_TYPES", "SUBSET_ANS_TYPES", _comma_list, "answer types to keep, e.g. 'yes/no,number'"),
        ("--SKIP_MISSING", "SKIP_MISSING_FEATS", parse_bool, "skip questions whose image features are missing"),
        ("--FEAT_STORE", "FEAT_STORE", _unquote, "read features from a memory-mapped store (python -m "
                                                 "core.data.feature_store) instead of one file per image"),
    ]),
    ("devices and loading", [
        ("--GPU", "GPU", _unquote, "GPU ids, e.g. '0' or '0,1' (default: CPU)"),
        ("--NW", "NUM_WORKERS", _int, "data loader worker processes (default: sized to the machine)"),
        ("--PINM", "PIN_MEM", parse_bool, "pin host memory in the data loader (True/False)"),
        ("--VERB", "VERBOSE", parse_bool, "show the per-step output, the per-step progress bar and the "
                                          "LOG_EVERY step lines (True/False); False hides only those (the step "
                                          "lines stay in the run log): epoch summaries and accuracies are always "
                                          "shown"),
    ]),
]
_REQUIRED = ("RUN_MODE", "MODEL", "DATASET")
_METAVARS = {"CONFIG": "PATH", "CKPT_PATH": "PATH", "SUBSET_IIDS": "PATH", "DATA_ROOT": "DIR", "FEAT_STORE": "DIR",
             "VERSION": "NAME", "CKPT_VERSION": "NAME", "TRAIN_SPLIT": "SPLITS", "GPU": "IDS",
             "SUBSET_ANS_TYPES": "TYPES"}
_NOT_OVERRIDES = ("MODEL", "DATASET", "SET")
_KEY_OF_DEST = {"backend": "BACKEND"}  # the one flag that is not an openvqa one keeps its lower-case name


def _choices():
    """The flags with a fixed set of values; models and datasets are the registry's."""
    return {"RUN_MODE": RUN_MODES, "MODEL": tuple(registry.MODELS), "DATASET": tuple(registry.DATASETS),
            "backend": BACKENDS}


def build_parser():
    choices = _choices()
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Train and evaluate the openvqa-family models (VQA and image classification) on PaddlePaddle or "
                    "PyTorch.",
        epilog="example: python run.py --RUN=train --MODEL=trar --DATASET=demo --backend=torch")
    for title, flags in _GROUPS:
        group = parser.add_argument_group(title)
        for flag, dest, kind, text in flags:
            kwargs = dict(dest=dest, type=kind, help=text, default=None,
                          metavar="N" if kind is _int else _METAVARS.get(dest))
            if dest in choices:
                kwargs["choices"] = choices[dest]
                kwargs["metavar"] = "{" + ",".join(choices[dest]) + "}"
            if dest in _REQUIRED:
                kwargs["required"] = True
            if kind is parse_bool:
                kwargs.update(nargs="?", const=True, metavar="BOOL")
            if dest == "SET":
                kwargs.update(action="append", metavar="KEY=VALUE")
            group.add_argument(flag, **kwargs)
    return parser


def parse_args(argv=None):
    """argv (without the program name) -> argparse.Namespace; bad values exit with an argparse error."""
    return build_parser().parse_args(argv)


def overrides_from_args(ns):
    """Config overrides from parsed flags: --SET pairs first, then every flag that was given."""
    overrides = dict(getattr(ns, "SET", None) or [])
    for key, value in vars(ns).items():
        if value is not None and key not in _NOT_OVERRIDES:
            overrides[_KEY_OF_DEST.get(key, key)] = value
    return overrides


def config_from_argv(argv=None):
    """parse_args + load_config in one call."""
    ns = parse_args(argv)
    return load_config(ns.MODEL, ns.DATASET, overrides_from_args(ns), run_mode=ns.RUN_MODE)
