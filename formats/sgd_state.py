"""SGD-with-momentum state between torch and Paddle, as numpy (the ViT recipe's optimizer; Adam's is adam_state.py).

torch (``SGD.state_dict()``):
    {'state': {position: {'momentum_buffer': array}}, 'param_groups': [{'lr', 'momentum', 'dampening',
     'weight_decay', 'nesterov', ..., 'params': [position, ...]}]}
  A parameter not yet stepped has no entry (its buffer starts as the first gradient).
Paddle (the .pdopt 'optimizer' entry of paddle.optimizer.Momentum, backends/paddle/checkpoint.py):
    {'framework': 'paddle', 'state': {structured name: {'velocity': array}}}
The update rules are the same (buffer = momentum * buffer + grad, param -= lr * buffer; torch's first buffer is the
gradient, Paddle's velocity starts at zero, which gives the same first buffer), so the buffer is the velocity; a
Linear weight's buffer transposes with the weight.
"""
import numpy as np

from formats import layout
from formats.layout import CheckpointMismatch

TORCH_KEY = "momentum_buffer"
PADDLE_KEY = "velocity"


def kind(state):
    """'SGD', 'Adam' or None: which optimizer a saved state (either framework's) belongs to."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        return None
    entries = [e for e in state["state"].values() if isinstance(e, dict)]
    names = {k for e in entries for k in e}
    if state.get("framework") == "paddle":
        return "SGD" if PADDLE_KEY in names else "Adam" if "moment1" in names else None
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not groups:
        return None
    if TORCH_KEY in names or (not names and "momentum" in groups[0]):
        return "SGD"
    return "Adam" if "exp_avg" in names or "betas" in groups[0] else None


def _order(state):
    return [p for g in state["param_groups"] for p in g["params"]]


def torch_to_paddle(state, param_names, linear_keys):
    """A torch SGD state -> the Paddle entry; ``param_names`` = the model's trainable parameters in optimizer order."""
    order = _order(state)
    if len(order) != len(param_names):
        raise CheckpointMismatch(f"SGD state: {len(order)} parameters in the checkpoint, {len(param_names)} in the "
                                 "model")
    out = {}
    for key, name in zip(order, param_names):
        entry = state["state"].get(key)
        if entry is None or entry.get(TORCH_KEY) is None:
            continue
        buf = np.asarray(entry[TORCH_KEY])
        out[name] = {PADDLE_KEY: layout.to_paddle_layout({name: buf}, linear_keys)[name]}
    return {"framework": "paddle", "state": out}


def paddle_to_torch(state, param_names, linear_keys, group):
    """The Paddle entry -> a torch SGD state_dict with one param group ``group`` (without 'params')."""
    out = {}
    for position, name in enumerate(param_names):
        entry = state["state"].get(name)
        if entry is None or entry.get(PADDLE_KEY) is None:
            continue
        out[position] = {TORCH_KEY: layout.to_torch_layout({name: np.asarray(entry[PADDLE_KEY])}, linear_keys)[name]}
    return {"state": out, "param_groups": [dict(group, params=list(range(len(param_names))))]}
