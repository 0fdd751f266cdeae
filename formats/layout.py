"""Framework-neutral layout rules for state dicts (numpy arrays), shared by both backends and the converter.

torch and Paddle name every parameter alike (the models mirror the original attribute names); they differ in
- Linear weights: torch [out, in], Paddle [in, out]. Which keys are Linear weights comes from the model
  (backends/<fw>/layers.py linear_weight_names), never from shapes: most weights here are square.
- LSTM: Paddle's state_dict shows each LSTM tensor twice, as lstm.weight_ih_l0 and lstm.0.cell.weight_ih.
  Paddle files written here hold both, as the Paddle ports' do (with_lstm_cell_aliases); torch files only the torch
  names. Reading folds the aliases back (normalize_lstm_names).
- paddle.save adds a 'StructuredToParameterName@@' table (structured name -> internal name) to a state dict.
"""
import re

import numpy as np

PADDLE_NAME_TABLE_KEY = "StructuredToParameterName@@"
MODULE_PREFIX = "module."
# a container's hashes of the vocabulary and answer list it was trained with (core/data/fingerprints.py), passed on
# in the meta where present
DATA_HASH_KEYS = ("vocab_sha256", "answers_sha256")
_LSTM_ALIAS = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<layer>\d+)\.cell(?P<dir>_fw|_bw)?\."
                         r"(?P<param>weight_ih|weight_hh|bias_ih|bias_hh)$")


class CheckpointMismatch(ValueError):
    """A checkpoint whose keys or shapes do not fit the model built from the config."""


def strip_module_prefix(state):
    """Keys without the leading 'module.' that DataParallel adds."""
    return {k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k: v for k, v in state.items()}


def lstm_canonical_name(key):
    """The torch name of a Paddle LSTM cell alias ('lstm.0.cell.weight_ih' -> 'lstm.weight_ih_l0'), else None."""
    m = _LSTM_ALIAS.match(key)
    if m is None:
        return None
    suffix = "_reverse" if m.group("dir") == "_bw" else ""
    return f"{m.group('prefix')}{m.group('param')}_l{m.group('layer')}{suffix}"


_LSTM_TORCH_NAME = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<param>weight_ih|weight_hh|bias_ih|bias_hh)"
                              r"_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def with_lstm_cell_aliases(state):
    """``state`` with Paddle's per-cell aliases of its torch-named LSTM tensors ('lstm.weight_ih_l0' ->
    'lstm.0.cell.weight_ih'; a bidirectional LSTM's 'cell_fw' / 'cell_bw'), holding the same arrays, after each
    LSTM's own keys: the keys of paddle.nn.LSTM's state_dict, so a Paddle port's strict loading finds all it expects."""
    matches = {k: _LSTM_TORCH_NAME.match(k) for k in state}
    bidirectional = {m.group("prefix") for m in matches.values() if m and m.group("reverse")}
    out, pending, group = {}, {}, None
    for key, value in state.items():
        m = matches[key]
        prefix = m.group("prefix") if m else None
        if pending and prefix != group:                  # the end of one LSTM's keys: its aliases follow them
            out.update(pending)
            pending = {}
        out[key] = value
        if m:
            group = prefix
            cell = "cell" if prefix not in bidirectional else "cell_bw" if m.group("reverse") else "cell_fw"
            pending[f"{prefix}{m.group('layer')}.{cell}.{m.group('param')}"] = value
    out.update(pending)
    return out


def normalize_lstm_names(state):
    """Rename Paddle LSTM cell aliases to the torch names; an alias whose torch name is present must hold equal data."""
    out = {}
    aliases = {}
    for key, value in state.items():
        canonical = lstm_canonical_name(key)
        if canonical is None:
            out[key] = value
        else:
            aliases[key] = (canonical, value)
    for key, (canonical, value) in aliases.items():
        if canonical in out:
            if not np.array_equal(np.asarray(out[canonical]), np.asarray(value)):
                raise CheckpointMismatch(f"LSTM alias {key} differs from {canonical}; the file is inconsistent")
        else:
            out[canonical] = value
    return out


def _transpose(state, linear_keys, direction):
    out = dict(state)
    for key in linear_keys:
        if key not in out:
            continue
        value = np.asarray(out[key])
        if value.ndim != 2:
            raise CheckpointMismatch(f"{key}: a Linear weight must be 2-D to change layout ({direction}), "
                                     f"got shape {tuple(value.shape)}")
        out[key] = np.ascontiguousarray(value.T)
    return out


def to_paddle_layout(state, linear_keys):
    """torch layout -> Paddle layout: transpose exactly the Linear weights in ``linear_keys``
    ([out, in] -> [in, out])."""
    return _transpose(state, linear_keys, "torch -> paddle")


def to_torch_layout(state, linear_keys):
    """Paddle layout -> torch layout: transpose exactly the Linear weights in ``linear_keys``."""
    return _transpose(state, linear_keys, "paddle -> torch")


def split_container(obj, path):
    """(state dict, meta) of a loaded checkpoint: the openvqa container {'state_dict', 'optimizer', 'lr_base',
    'epoch'} or a bare state dict (meta values None), plus the container's DATA_HASH_KEYS where it has them.
    The name table and 'module.' prefixes are removed."""
    meta = {"epoch": None, "lr_base": None, "optimizer": None}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        meta.update({k: obj.get(k) for k in meta})
        meta.update({k: obj[k] for k in DATA_HASH_KEYS if isinstance(obj.get(k), str)})
    elif isinstance(obj, dict) and obj and all(hasattr(v, "shape") for k, v in obj.items()
                                               if k != PADDLE_NAME_TABLE_KEY):
        state = obj
    else:
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
        if str(path).endswith(".pdopt"):
            raise CheckpointMismatch(f"{path} is a Paddle optimizer file (found {keys}); give the .pdparams beside "
                                     "it, which holds the weights (the .pdopt is read with it)")
        raise CheckpointMismatch(f"{path}: neither a checkpoint container with 'state_dict' nor a state dict "
                                 f"of arrays (found {keys})")
    state = {k: v for k, v in state.items() if k != PADDLE_NAME_TABLE_KEY}
    return strip_module_prefix(state), meta


# (key fragment, config key that decides whether such keys exist)
_KEY_HINTS = (
    ("routing_block.pool.", "POOLING"),
    ("routing_block.mlp.", "MODEL (a TRAR checkpoint has routing_block keys, an MCAN one has none)"),
    ("adapter.bbox_linear.", "USE_BBOX_FEAT"),
    ("adapter.grid_linear.", "DATASET (clevr grid adapter vs vqa frcn adapter)"),
)
# (key fragment, config keys that decide the shape); the first match names a conflict
_SHAPE_HINTS = (
    ("routing_block.mlp.2.", "ORDERS (number of routing spans)"),
    ("embedding.weight", "the vocabulary (token_size: token dictionary and USE_GLOVE)"),
    ("adapter.frcn_linear.weight", "USE_BBOX_FEAT or FEAT_SIZE"),
    ("adapter.grid_linear.weight", "FEAT_SIZE"),
    ("adapter.bbox_linear.weight", "FEAT_SIZE (BBOX_FEAT_SIZE)"),
    ("proj.", "the answer list (answer_size: answer_dict.json / dataset)"),
    ("proj_norm.", "FLAT_OUT_SIZE"),
    ("attflat_", "FLAT_MLP_SIZE / FLAT_OUT_SIZE / FLAT_GLIMPSES"),
)
_SIZE_HINT = "HIDDEN_SIZE / FF_SIZE (model size: small vs large)"
_LAYER = re.compile(r"\b(enc_list|dec_list)\.(\d+)\.")


def _matches(fragment, key):
    """``fragment`` at the start of a module path in ``key`` ('proj.' matches 'proj.weight', not 'x_proj.weight')."""
    return key.startswith(fragment) or "." + fragment in key


def _layers(keys):
    return {m.groups() for m in map(_LAYER.search, keys) if m}


def _kinds(keys, fragment):
    """The keys holding ``fragment``, with layer numbers blanked (a LAYER difference is reported once, as LAYER)."""
    return {_LAYER.sub(r"\1.*.", k) for k in keys if _matches(fragment, k)}


def config_hints(model_keys, ckpt_keys, conflicts):
    """Config keys that probably differ between the checkpoint's run and this one."""
    hints = [hint for fragment, hint in _KEY_HINTS if _kinds(model_keys, fragment) != _kinds(ckpt_keys, fragment)]
    if _layers(model_keys) != _layers(ckpt_keys):
        hints.append("LAYER")
    for key in conflicts:
        hint = next((h for fragment, h in _SHAPE_HINTS if _matches(fragment, key)), _SIZE_HINT)
        if hint not in hints:
            hints.append(hint)
    return [h for h in hints if not any(_keys_of(h) < _keys_of(other) for other in hints)]


def _keys_of(hint):
    """The config keys a hint names ('FLAT_MLP_SIZE / FLAT_OUT_SIZE' -> both), so that a hint another one covers
    ('FLAT_OUT_SIZE') is not listed twice."""
    return {part.split(" (")[0].strip() for part in hint.split(" / ")}


def _first(items, n=3):
    items = list(items)
    shown = ", ".join(items[:n])
    return f"{len(items)} ({shown}{', ...' if len(items) > n else ''})"


def check_compatible(model_shapes, ckpt_shapes, path):
    """Raise CheckpointMismatch unless both {key: shape} dicts (same layout) have the same keys and shapes."""
    missing = [k for k in model_shapes if k not in ckpt_shapes]
    unexpected = [k for k in ckpt_shapes if k not in model_shapes]
    conflicts = {k: (tuple(ckpt_shapes[k]), tuple(model_shapes[k])) for k in model_shapes
                 if k in ckpt_shapes and tuple(ckpt_shapes[k]) != tuple(model_shapes[k])}
    if not (missing or unexpected or conflicts):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_first(unexpected)}")
    if conflicts:
        shown = [f"{k} {c} vs model {m}" for k, (c, m) in conflicts.items()]
        parts.append(f"shape conflicts {_first(shown)}")
    hints = config_hints(model_shapes, ckpt_shapes, conflicts)
    hint = f"; check {', '.join(hints)}" if hints else ""
    raise CheckpointMismatch(f"{path} does not fit the model built from this config: {'; '.join(parts)}{hint}")
