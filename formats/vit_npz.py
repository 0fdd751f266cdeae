"""Google's official ViT checkpoints (``ViT-B_16.npz`` and the other sizes of the vit_models bucket) as a state dict of
the ViT / ViT+TRAR nets in torch's layout: the transforms of the original ``VisionTransformer.load_from``
(rentainhe/ViT.pytorch, unchanged in ViT-TRAR), numpy only.

| npz key (Google layout)                                             | state-dict key (torch layout)     | transform  |
| head/kernel (H, C), head/bias                                       | head.weight, head.bias            | kernel.T   |
| embedding/kernel (P, P, 3, H) HWIO, embedding/bias                  | ...patch_embeddings.weight / bias | -> OIHW    |
| cls (1, 1, H)                                                       | ...embeddings.cls_token           |            |
| Transformer/posembed_input/pos_embedding (1, N0 + 1, H)             | ...embeddings.position_embeddings | resized    |
| Transformer/encoder_norm/{scale, bias}                              | ...encoder.encoder_norm.*         |            |
| Transformer/encoderblock_i/MultiHeadDotProductAttention_1/          | ...layer.i.attn.{query,key,value} | (H, H).T   |
|   {query,key,value}/kernel (H, heads, dh), bias (heads, dh)         |   .weight, .bias                  | bias flat  |
|   out/kernel (heads, dh, H), out/bias (H)                           | ...layer.i.attn.out               | (H, H).T   |
| Transformer/encoderblock_i/MlpBlock_3/Dense_{0,1}/{kernel, bias}    | ...layer.i.ffn.fc{1,2}            | kernel.T   |
| Transformer/encoderblock_i/LayerNorm_{0,2}/{scale, bias}            | ...layer.i.{attention_norm, ffn_norm} |        |

- The position embeddings are resized when the checkpoint's patch grid differs from the model's (e.g. the 224
  pre-training, 14x14, into a 384 model, 24x24): the CLS row is kept, the grid interpolated linearly with the
  corners aligned (what the original's scipy.ndimage.zoom(order=1) computes; here without scipy).
- The head is loaded when the checkpoint has the model's number of classes, else zeroed (the original's
  ``zero_head``, which its train script always sets when fine-tuning from the 21k-class pre-training).
- Keys the npz does not have (ViT+TRAR's routing heads) are left to the caller, which keeps the net's initial values.
- Keys never read, as in the original: pre_logits/*. Hybrid (ResNet stem) checkpoints are refused.
"""
import logging
import zipfile

import numpy as np

from formats.layout import CheckpointMismatch

log = logging.getLogger(__name__)

POSEMB = "Transformer/posembed_input/pos_embedding"
HYBRID_KEY = "conv_root/kernel"
_BLOCK = "Transformer/encoderblock_{i}/"
_ATTENTION = "MultiHeadDotProductAttention_1/"
_PER_BLOCK = {   # npz name under the block -> (state-dict name under the block, kind)
    "LayerNorm_0/scale": ("attention_norm.weight", "copy"), "LayerNorm_0/bias": ("attention_norm.bias", "copy"),
    "LayerNorm_2/scale": ("ffn_norm.weight", "copy"), "LayerNorm_2/bias": ("ffn_norm.bias", "copy"),
    "MlpBlock_3/Dense_0/kernel": ("ffn.fc1.weight", "dense"), "MlpBlock_3/Dense_0/bias": ("ffn.fc1.bias", "copy"),
    "MlpBlock_3/Dense_1/kernel": ("ffn.fc2.weight", "dense"), "MlpBlock_3/Dense_1/bias": ("ffn.fc2.bias", "copy"),
    **{f"{_ATTENTION}{name}/kernel": (f"attn.{name}.weight", "heads") for name in ("query", "key", "value", "out")},
    **{f"{_ATTENTION}{name}/bias": (f"attn.{name}.bias", "flat") for name in ("query", "key", "value", "out")},
}
_TOP = {
    "embedding/kernel": ("transformer.embeddings.patch_embeddings.weight", "conv"),
    "embedding/bias": ("transformer.embeddings.patch_embeddings.bias", "copy"),
    "cls": ("transformer.embeddings.cls_token", "copy"),
    "Transformer/encoder_norm/scale": ("transformer.encoder.encoder_norm.weight", "copy"),
    "Transformer/encoder_norm/bias": ("transformer.encoder.encoder_norm.bias", "copy"),
}
HEAD = {"head/kernel": ("head.weight", "dense"), "head/bias": ("head.bias", "copy")}


def is_google_npz(path):
    """True for an ``np.savez`` archive (a zip of .npy entries), which no torch file is (those hold data.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)


def read_npz(path):
    """{key: array} of an npz file; no pickled objects are loaded."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _transform(value, kind, hidden):
    value = np.asarray(value)
    if kind == "dense":         # flax Dense kernel (in, out) -> torch Linear weight (out, in)
        return value.T
    if kind == "heads":         # (H, heads, dh) or (heads, dh, H): flattened to (H, H) in element order, then .T
        return value.reshape(hidden, hidden).T
    if kind == "flat":
        return value.reshape(-1)
    if kind == "conv":          # HWIO -> OIHW
        return value.transpose(3, 2, 0, 1)
    return value


def _axis_weights(n_old, n_new):
    """(low index, high index, weight of high) per output index: output j sits at input
    j * (n_old - 1) / (n_new - 1)."""
    if n_new == 1 or n_old == 1:
        pos = np.zeros(n_new)
    else:
        pos = np.arange(n_new, dtype=np.float64) * (n_old - 1) / (n_new - 1)
    low = np.minimum(np.floor(pos).astype(np.int64), max(n_old - 2, 0))
    high = np.minimum(low + 1, n_old - 1)
    return low, high, pos - low


def resize_grid(grid, size):
    """(g, g, H) -> (size, size, H): bilinear interpolation with the corners aligned, in float64, returned in the
    input's dtype (scipy.ndimage.zoom(grid, (size / g, size / g, 1), order=1) up to rounding)."""
    out = np.asarray(grid, dtype=np.float64)
    for axis in (0, 1):
        low, high, w = _axis_weights(out.shape[axis], size)
        shape = [1, 1, 1]
        shape[axis] = size
        w = w.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - w) + np.take(out, high, axis=axis) * w
    return out.astype(np.asarray(grid).dtype)


def resize_position_embeddings(posemb, tokens):
    """(1, 1 + g * g, H) -> (1, tokens, H): the CLS row kept, the g x g grid resized to the model's (square grids)."""
    posemb = np.asarray(posemb)
    old, new = _grid_side(posemb.shape[1] - 1, POSEMB), _grid_side(tokens - 1, "the model position_embeddings")
    log.info("load_pretrained: grid-size from %d to %d", old, new)
    grid = resize_grid(posemb[0, 1:].reshape(old, old, -1), new)
    return np.concatenate([posemb[:, :1], grid.reshape(1, new * new, -1)], axis=1)


def _grid_side(n, what):
    side = int(round(np.sqrt(n)))
    if side * side != n:
        raise CheckpointMismatch(f"{what}: {n} patch tokens do not form a square grid")
    return side


def google_state(weights, model_shapes, path):
    """(state, kept, notes): ``state`` {key: array} in torch layout for every key of ``model_shapes`` (the net's
    {key: torch-layout shape}) the npz ``weights`` provides; ``kept``, the model keys it does not provide (left at
    the net's values); ``notes``, what was adapted (position grid, zeroed head). Raises CheckpointMismatch naming
    the key on a missing or misshapen tensor."""
    if HYBRID_KEY in weights:
        raise CheckpointMismatch(f"{path}: a hybrid (ResNet stem, R50-ViT) checkpoint ({HYBRID_KEY}); only the plain "
                                 "ViT models are supported")
    hidden = model_shapes["transformer.encoder.encoder_norm.weight"][0]
    table = {npz: (key, kind) for npz, (key, kind) in _TOP.items()}
    layers = sorted({int(k.split(".")[3]) for k in model_shapes if k.startswith("transformer.encoder.layer.")})
    for i in layers:
        for name, (key, kind) in _PER_BLOCK.items():
            table[_BLOCK.format(i=i) + name] = (f"transformer.encoder.layer.{i}.{key}", kind)
    missing = [npz for npz in list(table) + [POSEMB] + list(HEAD) if npz not in weights]
    if missing:
        extra = sum(k.startswith("Transformer/encoderblock_") and k.endswith("LayerNorm_0/scale") for k in weights)
        raise CheckpointMismatch(f"{path} is not a Google ViT checkpoint of this model: missing "
                                 f"{', '.join(missing[:3])}"
                                 f"{', ...' if len(missing) > 3 else ''} (it has {extra} encoder blocks, the model "
                                 f"{len(layers)}); check LAYER, or the file")
    state, notes = {}, []
    for npz, (key, kind) in table.items():
        state[key] = _transform(weights[npz], kind, hidden)
    pos_key = "transformer.embeddings.position_embeddings"
    posemb = np.asarray(weights[POSEMB])
    if posemb.shape[1] != model_shapes[pos_key][1]:
        notes.append(f"position embeddings resized from {posemb.shape[1] - 1} to {model_shapes[pos_key][1] - 1} "
                     "patches (bilinear, corners aligned)")
        posemb = resize_position_embeddings(posemb, model_shapes[pos_key][1])
    state[pos_key] = posemb
    head = {key: _transform(weights[npz], kind, hidden) for npz, (key, kind) in HEAD.items()}
    if head["head.bias"].shape != tuple(model_shapes["head.bias"]):
        notes.append(f"head zeroed: the checkpoint has {head['head.bias'].shape[0]} classes, the model "
                     f"{model_shapes['head.bias'][0]} (zero_head, as the original fine-tunes)")
        head = {key: np.zeros(model_shapes[key], np.float32) for key in head}
    state.update(head)
    for key, value in state.items():
        if key not in model_shapes or tuple(value.shape) != tuple(model_shapes[key]):
            raise CheckpointMismatch(f"{path}: {key} has shape {tuple(value.shape)} after the Google-layout "
                                     f"transform, the model {model_shapes.get(key)}; check HIDDEN_SIZE, FF_SIZE, "
                                     "PATCH_SIZE")
    state = {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in state.items()}
    kept = [key for key in model_shapes if key not in state]
    for note in notes:
        log.info("%s: %s", path, note)
    return state, kept, notes
