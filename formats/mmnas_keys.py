"""Checkpoints of the official mmnas code (cuiyuhao1996/mmnas) -> the openvqa MMNasNet names, in torch layout.

The official Net_Full differs from openvqa's MMNasNet only in names and two details (reference mmnasnet.md §1.11):
- keys: imgfeat_linear -> adapter.frcn_linear; backnone.cells_enc.0.dag.{i}.0.X -> backbone.enc_list.{i}.X (and
  cells_dec -> dec_list); the op's ln -> norm; attflat_x (language) -> attflat_lang; attflat_y (image) ->
  attflat_img; linear_y_rel -> linear_rel; embedding, lstm, proj_norm, proj unchanged; 'module.' (DDP) stripped.
- its attention linears (linear_v/k/q/merge) have no bias: zeros are exactly equivalent;
- its answer vocabulary is built at run time, so proj's rows are re-indexed by answer string when its list is given.
"""
import json
import re

import numpy as np

from formats.layout import CheckpointMismatch, strip_module_prefix

_CELL = re.compile(r"^backnone\.cells_(enc|dec)\.0\.dag\.(\d+)\.0\.(.+)$")
_TOP_LEVEL = (("imgfeat_linear.", "adapter.frcn_linear."), ("attflat_x.", "attflat_lang."),
              ("attflat_y.", "attflat_img."), ("linear_y_rel.", "linear_rel."))
_NO_BIAS = re.compile(r"^backbone\.(enc|dec)_list\.\d+\.mhatt\.linear_(v|k|q|merge)\.bias$")
_MARKERS = ("backnone.", "imgfeat_linear.", "attflat_x.", "attflat_y.", "linear_y_rel.")
MISSING_ANSWER_BIAS = -1e4   # sigmoid(-1e4) = 0: an answer the checkpoint never learnt is never chosen


def looks_like_mmnas(keys):
    """True when the keys use the official mmnas names."""
    return any(k.startswith(m) for k in keys for m in _MARKERS)


def openvqa_name(key):
    """The openvqa name of one mmnas key (keys that are the same in both are returned unchanged)."""
    m = _CELL.match(key)
    if m:
        part, index, rest = m.groups()
        if rest.startswith("ln."):
            rest = "norm." + rest[len("ln."):]
        return f"backbone.{part}_list.{index}.{rest}"
    for old, new in _TOP_LEVEL:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def rename(state):
    """(state with openvqa names, number of keys renamed); 'module.' prefixes removed first."""
    out, renamed = {}, 0
    for key, value in strip_module_prefix(state).items():
        new = openvqa_name(key)
        if new in out:
            raise CheckpointMismatch(f"mmnas key {key} and another key both map to {new}")
        renamed += new != key
        out[new] = value
    return out, renamed


def add_zero_biases(state, model_keys):
    """Zero biases for the model's attention linears that the mmnas checkpoint lacks; returns (state, added keys).

    Only linear_v/k/q/merge biases of the backbone's attention ops are filled (they have bias=False in mmnas); the
    bias length is the weight's output size (torch layout [out, in]).
    """
    out = dict(state)
    added = []
    for key in model_keys:
        if key in out or not _NO_BIAS.match(key):
            continue
        weight = out.get(key[:-len("bias")] + "weight")
        if weight is None:
            continue   # the whole layer is missing: the compatibility check reports it
        out[key] = np.zeros(weight.shape[0], dtype=weight.dtype)
        added.append(key)
    return out, added


def read_answer_list(path):
    """Answers in index order from a json file: a list of strings, {answer: index}, or openvqa's
    [ans_to_ix, ix_to_ans]."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the answer list ({exc})") from None
    if isinstance(data, list) and len(data) == 2 and all(isinstance(d, dict) for d in data):
        data = data[0]                                          # openvqa: [ans_to_ix, ix_to_ans]
    if isinstance(data, dict):
        try:
            pairs = sorted((int(i), a) for a, i in data.items())
        except (TypeError, ValueError):
            raise ValueError(f"{path}: expected {{answer: index}} with integer indices") from None
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise ValueError(f"{path}: answer indices must be 0..{len(pairs) - 1} without gaps")
        answers = [a for _, a in pairs]
    elif isinstance(data, list) and all(isinstance(a, str) for a in data):
        answers = list(data)
    else:
        raise ValueError(f"{path}: expected a json list of answers, {{answer: index}} or [ans_to_ix, ix_to_ans]")
    if len(set(answers)) != len(answers):
        raise ValueError(f"{path}: the answer list has duplicates")
    return answers


def reindex_answers(state, source_answers, target_answers, path="checkpoint"):
    """Rows of proj.weight ([A, F], torch layout) and proj.bias moved from ``source_answers`` order to
    ``target_answers`` order. Target answers the source lacks get a zero weight row and a bias of
    MISSING_ANSWER_BIAS (they are never predicted); returns (state, list of those answers)."""
    if "proj.weight" not in state or "proj.bias" not in state:
        raise CheckpointMismatch(f"{path}: no proj.weight / proj.bias to re-index by answer")
    weight, bias = state["proj.weight"], state["proj.bias"]
    if weight.shape[0] != len(source_answers):
        raise CheckpointMismatch(f"{path}: proj has {weight.shape[0]} answer rows but the mmnas answer list has "
                                 f"{len(source_answers)}")
    row_of = {a: i for i, a in enumerate(source_answers)}
    rows = np.array([row_of.get(a, -1) for a in target_answers])
    missing = [a for a, r in zip(target_answers, rows) if r < 0]
    new_weight = np.zeros((len(target_answers), weight.shape[1]), weight.dtype)
    new_bias = np.full(len(target_answers), MISSING_ANSWER_BIAS, bias.dtype)
    found = rows >= 0
    new_weight[found] = weight[rows[found]]
    new_bias[found] = bias[rows[found]]
    out = dict(state)
    out["proj.weight"], out["proj.bias"] = new_weight, new_bias
    return out, missing

