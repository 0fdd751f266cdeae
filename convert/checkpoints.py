"""Checkpoints between PyTorch and PaddlePaddle, weights and Adam state: the library behind `python -m convert
torch2paddle|paddle2torch` (convert/cli.py) and the reader convert/parity.py uses.

Sources are read without torch or paddle (formats.restricted_pickle); which tensors transpose comes from the model of
the config (convert.manifest); token_size and answer_size from the checkpoint's embedding and proj. The output has the
same layout the target backend writes, so `run.py --RESUME=True --CKPT_PATH=<converted>` continues in the other
framework with Adam's moments, epoch and lr_base:
- torch: one file {'state_dict', 'optimizer' (torch Adam state_dict), 'lr_base', 'epoch'} (torch.save; needs torch);
- paddle: <stem>.pdparams and <stem>.pdopt (backends/paddle/checkpoint.py; plain pickles of numpy arrays, as
  paddle.save writes them, written without paddle). The .pdopt holds the optimizer state under Paddle's own
  accumulator names, as training writes it, when paddle is installed (paddle_pdopt: the names come from building the
  Paddle net); else in the previous layout, which run.py --RESUME reads but Paddle's set_state_dict does not.
Files are written to a temp file and renamed; the .pdopt first, the .pdparams last.
A Google ViT .npz (formats.vit_npz) is a source for either direction: its weights in the target's layout, with the
net's own initial values for the keys it lacks (ViT+TRAR's routing heads), the head as the npz has it.
"""
from __future__ import annotations

import collections
import os
import pickle
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from backends.base import adam_settings, sgd_settings
from convert.manifest import build_manifest, facts_from_state, initial_values
from core.checkpoints import atomic_save, atomic_write
from core.config import load_config
from core.data.answers import ANSWER_DICT_PATH
from formats import adam_state, integrity, layout, mmnas_keys, restricted_pickle, sgd_state, torch_zip, vit_npz

DIRECTIONS = {"torch2paddle": ("torch", "paddle"), "paddle2torch": ("paddle", "torch")}
LAYOUTS = ("openvqa", "mmnas")
PADDLE_PROTOCOL = 4   # paddle.save's default; for a dict of numpy arrays paddle.save is a plain pickle.Pickler dump


class WrongDirection(ValueError):
    """A source file of the other framework than the direction names."""


# ---- config ---------------------------------------------------------------------------------------------------

def config_overrides(config: str | None = None,
                     sets: Iterable[tuple[str, Any]] | None = None) -> dict[str, Any]:
    overrides = dict(sets or [])
    if config is not None:
        overrides["CONFIG"] = config
    return overrides


# ---- reading ---------------------------------------------------------------------------------------------------

def _is_pickle(path):
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def check_source(path: str, framework: str) -> None:
    """Fail early, in one line, on a missing file or a file of the other framework."""
    if os.path.isdir(path):
        example = os.path.join(path, "epoch<N>.pkl" if framework == "torch" else "epoch<N>.pdparams")
        raise FileNotFoundError(f"{path} is a folder; expected a checkpoint file in it, e.g. {example}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    kind = restricted_pickle.checkpoint_kind(path)
    if framework == "torch" and kind == "pickle":
        if _is_pickle(path):
            raise WrongDirection(f"{path} is a plain pickle as paddle.save writes (a Paddle checkpoint), not a torch "
                                 f"checkpoint; convert it with `python -m convert paddle2torch`")
        raise restricted_pickle.CheckpointReadError(f"{path}: not a checkpoint (neither a torch zip or legacy file "
                                                    f"nor a pickle); the file may be damaged")
    if framework == "paddle" and kind in ("torch-zip", "torch-legacy", "tar"):
        raise WrongDirection(f"{path} is a torch checkpoint ({kind}), not a Paddle file; convert it with "
                             f"`python -m convert torch2paddle`")


def _raw_state(obj):
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    return obj if isinstance(obj, dict) else {}


def read_source(path: str, framework: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, int]]:
    """(state {name: array}, meta {'epoch', 'lr_base', 'optimizer'}, counts) of a checkpoint, names normalised."""
    read = restricted_pickle.read_torch_checkpoint if framework == "torch" else restricted_pickle.read_pdparams
    obj = read(path)
    raw_keys = [k for k in _raw_state(obj) if k != layout.PADDLE_NAME_TABLE_KEY]
    state, meta = layout.split_container(obj, path)
    del obj    # the arrays now live in ``state`` only, so each can be freed once converted
    counts = {"module_prefix": sum(k.startswith(layout.MODULE_PREFIX) for k in raw_keys), "lstm_aliases": 0,
              "lstm_duplicates": 0}
    if framework == "paddle":
        meta = restricted_pickle.read_pdopt_meta(path, meta)   # first: a pair mixed from two saves is refused
        aliases = {k: layout.lstm_canonical_name(k) for k in state}
        aliases = {k: c for k, c in aliases.items() if c is not None}
        counts["lstm_duplicates"] = sum(c in state for c in aliases.values())
        counts["lstm_aliases"] = len(aliases) - counts["lstm_duplicates"]
        state = layout.normalize_lstm_names(state)
    return state, meta, counts


def read_google_npz(path, cfg, notes):
    """(state in torch layout, empty meta, counts) of a Google ViT .npz for cfg's model (its class count as the
    npz's head), the keys it lacks at the net's initial values."""
    weights = vit_npz.read_npz(path)
    if "head/bias" not in weights:
        raise layout.CheckpointMismatch(f"{path}: no head/bias, so not a Google ViT checkpoint")
    facts = {"num_classes": int(weights["head/bias"].shape[0])}
    state, kept, adapted = vit_npz.google_state(weights, build_manifest(cfg, **facts).torch_shapes, path)
    if kept:
        state.update(initial_values(cfg, kept, **facts))
        notes.append(f"{len(kept)} tensors the npz lacks keep the net's initial values (e.g. {kept[0]})")
    notes += adapted
    counts = {"module_prefix": 0, "lstm_aliases": 0, "lstm_duplicates": 0}
    return state, {"epoch": None, "lr_base": None, "optimizer": None}, counts


# ---- converting ------------------------------------------------------------------------------------------------

def _mmnas_answers(state, mmnas_answers, answers, path, notes):
    """proj re-indexed from the mmnas run's answer order to ``answers`` (default: openvqa's answer_dict.json)."""
    if not mmnas_answers:
        notes.append("answer rows kept in the checkpoint's order; pass --mmnas-answers to re-index them by answer")
        return state, False
    target = answers or ANSWER_DICT_PATH
    state, missing = mmnas_keys.reindex_answers(state, mmnas_keys.read_answer_list(mmnas_answers),
                                                mmnas_keys.read_answer_list(target), path)
    if missing:
        notes.append(f"{len(missing)} answers of {target} are not in the mmnas list (e.g. {missing[0]!r}): zero "
                     f"rows, bias {mmnas_keys.MISSING_ANSWER_BIAS:g}, never predicted")
    return state, True


def _convert_weights(state, manifest, target):
    """{key: array} in the target layout and the model's key order; consumes ``state`` (each source array is dropped
    as soon as its converted copy exists, so a large checkpoint is never held twice)."""
    to_layout = layout.to_paddle_layout if target == "paddle" else layout.to_torch_layout
    out = collections.OrderedDict()
    for key in manifest.keys:
        out[key] = to_layout({key: state.pop(key)}, manifest.linear_keys)[key]
    return out


def _convert_optimizer(saved, direction, manifest, cfg, lr_base, notes):
    """(converted optimizer entry or None, status text, step or None)."""
    if saved is None:
        return None, "absent", None
    if sgd_state.kind(saved) == "SGD":
        return _convert_sgd(saved, direction, manifest, cfg, lr_base)
    if cfg.OPT == "SGD":
        return None, "not converted: not an SGD state (OPT is SGD)", None
    adam = adam_settings(cfg)
    betas = adam["betas"]
    if direction == "torch2paddle":
        if adam_state.is_paddle_adam(saved):
            return saved, "kept (already in the Paddle format)", None
        if not adam_state.is_torch_adam(saved):
            return None, "not converted: not a torch Adam state_dict", None
        if adam_state.torch_betas(saved) != [tuple(betas)]:
            notes.append(f"the checkpoint's Adam betas {adam_state.torch_betas(saved)} differ from OPT_PARAMS "
                         f"{tuple(betas)}; the beta powers follow OPT_PARAMS, as a resumed torch run would")
        steps = adam_state.torch_steps(saved)
        converted = adam_state.torch_to_paddle(saved, manifest.param_names, manifest.linear_keys, betas,
                                               manifest.torch_shapes, consume=True)
        return converted, "converted", max(steps, default=None)
    if adam_state.is_torch_adam(saved):
        return saved, "kept (already in the torch format)", None
    if not adam_state.is_paddle_adam(saved):
        return None, ("not converted: Paddle's own optimizer.state_dict() (keyed by internal names such as "
                      "linear_0.w_0_moment1_0) cannot be matched to parameters"), None
    group = adam_state.default_param_group(betas, adam["eps"], adam["weight_decay"], adam["amsgrad"],
                                           lr=lr_base or 0.0)
    converted = adam_state.paddle_to_torch(saved, manifest.param_names, manifest.linear_keys, betas, group,
                                           manifest.torch_shapes, consume=True)
    steps = [int(e["step"]) for e in converted["state"].values()]
    return converted, "converted", max(steps, default=None)


def _convert_sgd(saved, direction, manifest, cfg, lr_base):
    """(converted SGD-with-momentum entry, status, None): the buffers keep their values, Linear ones transposed."""
    if direction == "torch2paddle":
        if saved.get("framework") == "paddle":
            return saved, "kept (already in the Paddle format)", None
        return sgd_state.torch_to_paddle(saved, manifest.param_names, manifest.linear_keys), "converted", None
    if saved.get("framework") != "paddle":
        return saved, "kept (already in the torch format)", None
    sgd = sgd_settings(cfg) if cfg.OPT == "SGD" else {"momentum": 0.9, "weight_decay": 0.0, "nesterov": False}
    group = dict(sgd, lr=lr_base or 0.0, dampening=0, maximize=False, foreach=None, differentiable=False, fused=None)
    return sgd_state.paddle_to_torch(saved, manifest.param_names, manifest.linear_keys, group), "converted", None


# ---- writing ---------------------------------------------------------------------------------------------------

# destination endings that name the other framework's file: refused rather than written in the wrong format
_FOREIGN_ENDINGS = {"paddle": (".pkl", ".pth", ".pt", ".pdopt"), "torch": (".pdparams", ".pdopt", ".pdiparams")}


def check_destination(dst: str, target: str) -> None:
    """A destination named like the other framework's file is refused: paddle.load cannot read a torch file called
    x.pdparams, and torch2paddle would write x.pkl.pdparams."""
    ending = next((e for e in _FOREIGN_ENDINGS[target] if dst.lower().endswith(e)), None)
    if ending is not None:
        want = "<stem>.pdparams (the .pdopt is written beside it)" if target == "paddle" else "<name>.pkl"
        raise ValueError(f"{dst}: a {target} checkpoint is written here, but {ending} names "
                         f"{'a Paddle optimizer file' if ending == '.pdopt' else 'another format'}; name it {want}")


def paddle_paths(dst: str) -> tuple[str, str]:
    stem = dst[:-len(".pdparams")] if dst.endswith(".pdparams") else dst
    return stem + ".pdparams", stem + ".pdopt"


def _dump(f, obj):
    """What paddle.save writes for a tree of numpy arrays, less the memo: a memoizing pickler keeps every array's
    bytes alive until the end, doubling the memory of a large checkpoint. The tree holds no shared objects, so the
    pickle loads the same (paddle.load, formats.restricted_pickle)."""
    pickler = pickle.Pickler(f, protocol=PADDLE_PROTOCOL)
    pickler.fast = True
    pickler.dump(obj)


def _pickle_to(path, obj):
    with atomic_write(path) as f:
        _dump(f, obj)


def write_paddle(dst: str, weights: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None) -> list[str]:
    """<stem>.pdparams (+ <stem>.pdopt when ``meta`` is not None, with the checksums of formats.integrity that tie
    it to the .pdparams), the .pdopt renamed into place first. Without meta an old .pdopt beside the destination is
    removed, so it cannot pair with the new weights."""
    params_path, opt_path = paddle_paths(dst)
    params = layout.with_lstm_cell_aliases(dict(weights))   # both LSTM names, as paddle.nn.LSTM
    if meta is None:
        if os.path.exists(opt_path):
            os.remove(opt_path)
        _pickle_to(params_path, params)
        return [params_path]

    def write_pair(params_tmp):
        with open(params_tmp, "wb") as f:
            _dump(f, params)
        _pickle_to(opt_path, {**meta, **integrity.pdopt_checksums(meta, params_tmp)})   # renamed first
    atomic_save(params_path, write_pair)                                                   # renamed last
    return [params_path, opt_path]


PDOPT_PADDLE = "paddle's (optimizer.set_state_dict(paddle.load(pdopt)) takes it)"
PDOPT_PROJECT = "this project's ('optimizer' entry: run.py --RESUME reads it, Paddle's set_state_dict does not)"
NO_PADDLE_NOTE = ("paddle is not installed: the .pdopt holds the optimizer state in this project's layout, which "
                  "run.py --RESUME reads; convert with paddle installed for a .pdopt Paddle's set_state_dict takes")


def paddle_pdopt(meta, cfg, facts, notes):
    """(.pdopt contents, layout text): the optimizer entry as Paddle's own accumulator names, which only a Paddle net
    of cfg built as run.py builds it can give (backends.paddle.checkpoint.fresh_accumulator_names), beside the
    structured names (formats.adam_state.paddle_keys, the writer training uses); the 'optimizer' entry as it is
    where paddle is not installed or the names do not cover every accumulator."""
    try:
        from backends.paddle.backend import PaddleBackend
        from backends.paddle.checkpoint import fresh_accumulator_names
    except ImportError:
        notes.append(NO_PADDLE_NOTE)
        return meta, PDOPT_PROJECT
    entry = meta["optimizer"]
    keys = adam_state.paddle_keys(entry, fresh_accumulator_names(PaddleBackend(), cfg, **facts))
    missing = sum(len(accumulators) for accumulators in entry["state"].values()) - \
        len(keys[adam_state.PADDLE_NAMES_KEY])
    if missing:
        notes.append(f"{missing} optimizer accumulators have no name in Paddle's {cfg.OPT} optimizer of this "
                     f"config (OPT_PARAMS); the .pdopt keeps this project's layout")
        return meta, PDOPT_PROJECT
    return {**keys, **{k: v for k, v in meta.items() if k != "optimizer"}}, PDOPT_PADDLE


def _torch_tensors(obj, torch):
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.require(obj, requirements=["C", "W"]))
    if isinstance(obj, dict):
        return type(obj)((k, _torch_tensors(v, torch)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_torch_tensors(v, torch) for v in obj)
    return obj


def write_torch(dst: str, weights: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None) -> list[str]:
    """The openvqa container at ``dst``: {'state_dict'} plus whichever of 'optimizer', 'lr_base', 'epoch' is known.
    Without torch (a Paddle-only machine) formats.torch_zip writes the same zip format from numpy."""
    try:
        import torch
    except ImportError:
        container = {"state_dict": collections.OrderedDict(weights)}
        container.update((key, value) for key, value in (meta or {}).items() if value is not None)
        with atomic_write(dst) as f:
            torch_zip.write_torch_zip(f, container)
        return [dst]
    container = {"state_dict": _torch_tensors(collections.OrderedDict(weights), torch)}
    for key, value in (meta or {}).items():
        if value is not None:
            container[key] = _torch_tensors(value, torch)
    with atomic_write(dst) as f:
        torch.save(container, f)
    return [dst]


# ---- the conversion --------------------------------------------------------------------------------------------

def convert_file(direction: str, src: str, dst: str, model: str, dataset: str, config: str | None = None,
                 sets: Iterable[tuple[str, Any]] | None = None, from_layout: str = "openvqa",
                 mmnas_answers: str | None = None, answers: str | None = None,
                 weights_only: bool = False) -> dict[str, Any]:
    """Convert one checkpoint; returns the summary dict (also what the CLI prints). Raises one-line errors:
    ConfigError, FileNotFoundError, WrongDirection, restricted_pickle.CheckpointReadError / RefusedPickle,
    layout.CheckpointMismatch, NoFramework."""
    start = time.perf_counter()
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if from_layout not in LAYOUTS:
        raise ValueError(f"--from-layout must be one of {', '.join(LAYOUTS)}, got {from_layout!r}")
    source, target = DIRECTIONS[direction]
    if from_layout == "mmnas" and source != "torch":
        raise WrongDirection("official mmnas checkpoints are torch files: use torch2paddle with --from-layout mmnas")
    if (mmnas_answers or answers) and from_layout != "mmnas":
        raise ValueError("--mmnas-answers and --answers need --from-layout mmnas")
    cfg = load_config(model, dataset, config_overrides(config, sets))
    google = os.path.isfile(src) and vit_npz.is_google_npz(src)
    if google and from_layout != "openvqa":
        raise ValueError(f"{src} is a Google ViT .npz; --from-layout {from_layout} does not apply")
    if not google:
        check_source(src, source)
    check_destination(dst, target)
    notes = []

    if google:
        state, meta, counts = read_google_npz(src, cfg, notes)
    else:
        state, meta, counts = read_source(src, source)
    renamed = counts["module_prefix"] + counts["lstm_aliases"]
    added, reindexed = [], False
    if from_layout == "mmnas":
        state, mmnas_renamed = mmnas_keys.rename(state)
        renamed += mmnas_renamed
        state, reindexed = _mmnas_answers(state, mmnas_answers, answers, src, notes)
    elif mmnas_keys.looks_like_mmnas(state):
        raise layout.CheckpointMismatch(f"{src} uses the official mmnas key names (backnone.cells_*, "
                                        f"imgfeat_linear, ...); add --from-layout mmnas")
    facts = facts_from_state(cfg, state, src)
    manifest = build_manifest(cfg, **facts)
    if from_layout == "mmnas":
        state, added = mmnas_keys.add_zero_biases(state, manifest.keys)
    layout.check_compatible(manifest.shapes("torch" if google else source),
                            {k: tuple(v.shape) for k, v in state.items()}, src)
    if google and target == "torch":     # already in torch's layout
        weights = collections.OrderedDict((key, state.pop(key)) for key in manifest.keys)
    else:
        weights = _convert_weights(state, manifest, "paddle" if google else target)

    saved_optimizer = meta.get("optimizer")
    if weights_only and saved_optimizer is not None:
        converted, status, step = None, "skipped (--weights-only)", None
    elif from_layout == "mmnas" and saved_optimizer is not None:
        converted, status, step = None, "not converted: the mmnas net lists its parameters differently", None
    else:
        converted, status, step = _convert_optimizer(saved_optimizer, direction, manifest, cfg, meta.get("lr_base"),
                                                     notes)
    if saved_optimizer is not None and converted is None and not weights_only:
        notes.append(f"optimizer state {status}; a resumed run restarts Adam's moments")
    out_meta = {"epoch": meta.get("epoch"), "lr_base": meta.get("lr_base"), "optimizer": converted}
    if not reindexed:   # the hashes of the data the weights were trained with (core/data/fingerprints.py) go along
        out_meta.update({k: meta[k] for k in layout.DATA_HASH_KEYS if meta.get(k) is not None})
    if target == "paddle":
        has_meta = any(v is not None for v in out_meta.values())
        pdopt_layout = None
        if converted is not None:
            out_meta, pdopt_layout = paddle_pdopt(out_meta, cfg, facts, notes)
        written = write_paddle(dst, weights, out_meta if has_meta else None)
    else:
        written = write_torch(dst, weights, out_meta)

    return {
        "direction": direction, "source": src, "outputs": written, "source_layout": from_layout,
        "tensors": len(weights), "transposed": sum(k in manifest.linear_keys for k in weights),
        "renamed": renamed, "lstm_duplicates_dropped": counts["lstm_duplicates"], "zero_biases_added": len(added),
        "answers_reindexed": reindexed, "parameters": int(sum(v.size for v in weights.values())),
        "facts": facts, "token_size": facts.get("token_size"), "answer_size": facts.get("answer_size"),
        "optimizer": status, "optimizer_converted": status == "converted", "optimizer_step": step,
        "pdopt_layout": pdopt_layout if target == "paddle" else None,
        "epoch": meta.get("epoch"), "lr_base": meta.get("lr_base"), "layer_types_from": manifest.framework,
        "notes": notes, "seconds": round(time.perf_counter() - start, 3),
    }
