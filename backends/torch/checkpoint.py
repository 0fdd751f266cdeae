"""Checkpoint files for the PyTorch backend. Mirrored in backends/paddle/checkpoint.py.

Written: the original openvqa container, one torch.save (zip) file
    {'state_dict': net.state_dict(), 'optimizer': Adam.state_dict(), 'lr_base': float, 'epoch': int,
     'vocab_sha256': str, 'answers_sha256': str}
  (the last two: the training data's vocabulary and answer list, core/data/fingerprints.py; the original code reads
  the first four keys and ignores them). The zip's CRC-32 per member is the file's checksum.
Read (a zip file's CRC-32 checked first, formats.integrity.check_zip_crc):
- that container or a bare state dict, from openvqa / TRAR-VQA (zip or legacy torch format, 'module.' prefixes);
  torch.load(weights_only=True) first, then the restricted reader of formats.restricted_pickle (weights_only refuses
  some harmless files); never weights_only=False.
- a Paddle .pdparams (this project's or a Paddle port's): Linear weights transposed using the model's Linear list,
  LSTM aliases folded into the torch names; epoch and lr_base come from the .pdopt beside it.
- Google's official ViT .npz (formats.vit_npz): the original load_from's transforms; keys the npz lacks (ViT+TRAR's
  routing heads) keep the net's values.
"""
import numpy as np
import torch

from backends.torch.layers import linear_weight_names
from core.checkpoints import atomic_write
from formats import adam_state, integrity, layout, restricted_pickle, sgd_state, vit_npz


def _to_torch(obj):
    """numpy arrays (from the restricted reader) -> tensors, inside containers."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj if obj.flags.writeable else obj.copy())
    if isinstance(obj, dict):
        return type(obj)((k, _to_torch(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def read_checkpoint(path):
    """(loaded object, is_paddle_layout) of a checkpoint file of either framework."""
    if restricted_pickle.checkpoint_kind(path) == "pickle":
        return restricted_pickle.read_pdparams(path), True
    if restricted_pickle.checkpoint_kind(path) == "torch-zip":
        integrity.check_zip_crc(path)   # torch.load does not check the members' CRC-32
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except Exception:
        # weights_only refuses a few harmless things (numpy scalars, some old files); the restricted reader
        # accepts those and refuses code, naming the global; a damaged file gets its one-line error from it.
        return _to_torch(restricted_pickle.read_torch_checkpoint(path)), False


def load_google_npz(net, path):
    """Google's ViT .npz into ``net``; the routing heads it lacks keep their values. Returns the empty meta."""
    own = net.state_dict()
    state, kept, _notes = vit_npz.google_state(vit_npz.read_npz(path), {k: tuple(v.shape) for k, v in own.items()},
                                               path)
    state = _to_torch(state)
    state.update({key: own[key] for key in kept})
    net.load_state_dict(state, strict=True)
    return {"epoch": None, "lr_base": None, "optimizer": None}


def load_checkpoint(net, path):
    """Load weights into ``net`` (strict, with a report naming the config keys that probably differ);
    return {'epoch', 'lr_base', 'optimizer'}, None where the file has none."""
    if vit_npz.is_google_npz(path):
        return load_google_npz(net, path)
    obj, paddle_layout = read_checkpoint(path)
    state, meta = layout.split_container(obj, path)
    if paddle_layout:   # the .pdopt first: a .pdparams that does not pair with it is refused before anything else
        meta = restricted_pickle.read_pdopt_meta(path, meta)
        state = layout.normalize_lstm_names({k: np.asarray(v) for k, v in state.items()})
        state = _to_torch(layout.to_torch_layout(state, linear_weight_names(net)))
    own = net.state_dict()
    layout.check_compatible({k: tuple(v.shape) for k, v in own.items()},
                            {k: tuple(v.shape) for k, v in state.items()}, path)
    net.load_state_dict(state, strict=True)
    return meta


def optimizer_state(optimizer, net):
    """The optimizer state as saved in a checkpoint: torch's own Adam state_dict (the original format)."""
    return optimizer.state_dict()


def restore_optimizer_state(optimizer, net, state):
    """Load a saved Adam state: torch's own, or a Paddle one converted by formats.adam_state (moments transposed for
    Linear weights, the step read from the beta powers); returns False (and changes nothing) for anything else."""
    if adam_state.is_paddle_adam(state):
        group = {k: v for k, v in optimizer.state_dict()["param_groups"][0].items() if k != "params"}
        params = {name: tuple(p.shape) for name, p in net.named_parameters() if p.requires_grad}
        state = adam_state.paddle_to_torch(state, list(params), linear_weight_names(net), group["betas"], group,
                                           torch_shapes=params)
    if not adam_state.is_torch_adam(state):
        return False
    optimizer.load_state_dict(_to_torch(state))
    return True


def save_checkpoint(path, net, optimizer, epoch, lr_base, data_hashes=None):
    """The openvqa container at ``path`` (written to a temp file, then renamed), with ``data_hashes``
    ({'vocab_sha256', 'answers_sha256'}, core/data/fingerprints.py) as extra top-level keys."""
    container = {"state_dict": net.state_dict(), "optimizer": optimizer_state(optimizer, net),
                 "lr_base": float(lr_base), "epoch": int(epoch), **(data_hashes or {})}
    with atomic_write(path) as f:
        torch.save(container, f)


def restore_sgd_state(optimizer, net, state):
    """Load a saved SGD-with-momentum state: torch's own, or a Paddle Momentum one converted by formats.sgd_state
    (velocities transposed for Linear weights); returns False (and changes nothing) for anything else."""
    if sgd_state.kind(state) != "SGD":
        return False
    if state.get("framework") == "paddle":
        group = {k: v for k, v in optimizer.state_dict()["param_groups"][0].items() if k != "params"}
        names = [name for name, p in net.named_parameters() if p.requires_grad]
        state = sgd_state.paddle_to_torch(state, names, linear_weight_names(net), group)
    optimizer.load_state_dict(_to_torch(state))
    return True
