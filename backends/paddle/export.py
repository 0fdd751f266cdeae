"""Paddle's part of deployment: a Net traced with paddle.jit.to_static and saved with paddle.jit.save, and paddle2onnx
run on such a saved program. deploy/export.py and deploy/onnx.py build the folder around these and check the result.

The Net is wrapped in a Layer that takes only the inputs the model reads (paddle.jit.save refuses inputs a program
does not use), traced with a dynamic batch axis, and saved in Paddle 3's format under the names Paddle's own tools
use (inference.json, the PIR program, + inference.pdiparams), its output named ``logits``.
"""
import json
import os
import subprocess
import sys

import paddle
from paddle import nn
from paddle.static import InputSpec

from backends.base import INPUT_KEYS
from core.checkpoints import atomic_write

FRAMEWORK_VERSION = paddle.__version__
# paddle.jit.save's path prefix (PaddleOCR / PaddleClas / PaddleDetection exports are inference.json + .pdiparams)
PATH_PREFIX = "inference"
OUTPUT_NAME = "logits"


def _net_args(names, values):
    """Net.forward's four positional arguments; None for the inputs the model does not read."""
    given = dict(zip(names, values))
    return [given.get(key) for key in INPUT_KEYS]


class ImageQuestion(nn.Layer):
    """The exported forward of models reading one image input (grid, region or CLEVR features) and the question."""

    def __init__(self, net, names):
        super().__init__()
        self.net = net
        self.names = tuple(names)

    def forward(self, image, ques_ix):
        return self.net(*_net_args(self.names, (image, ques_ix)))


class ImageBoxesQuestion(ImageQuestion):
    """... and the boxes (bbox_feat: MMNasNet's relation geometry, or USE_BBOX_FEAT)."""

    def forward(self, image, bbox_feat, ques_ix):
        return self.net(*_net_args(self.names, (image, bbox_feat, ques_ix)))


def inputs_wrapper(net, names):
    """``net`` taking only the inputs ``names`` (the manifest's order), in eval mode (so is ``net`` then)."""
    wrapper = (ImageQuestion if len(names) == 2 else ImageBoxesQuestion)(net, names)
    wrapper.eval()
    return wrapper


def dynamic_logits(net, names, batch):
    """The dynamic graph's logits (numpy) of ``batch`` {name: array}, in eval mode; the net's mode is restored."""
    was_training = net.training
    net.eval()
    try:
        with paddle.no_grad():
            return net(*_net_args(names, [paddle.to_tensor(batch[n]) for n in names])).numpy()
    finally:
        if was_training:
            net.train()


def save_static(wrapper, specs, path_prefix):
    """paddle.jit.to_static + paddle.jit.save of ``wrapper`` (inputs_wrapper) to <path_prefix>.json / .pdiparams,
    its output named OUTPUT_NAME; ``specs`` are the manifest's input entries {'name', 'shape', 'dtype'}, their batch
    axis left dynamic."""
    input_spec = [InputSpec([None] + list(s["shape"][1:]), s["dtype"], s["name"]) for s in specs]
    static = paddle.jit.to_static(wrapper, input_spec=input_spec, full_graph=True)
    paddle.jit.save(static, path_prefix, input_spec=input_spec)
    name_output(path_prefix + ".json", OUTPUT_NAME)


def name_output(program_path, name):
    """Give the single output of a saved PIR program (its fetch op) the name ``name``.

    paddle.jit.save names an output after its value only when the value has a name, and PIR lets only persistable
    values have one, so a Net's logits come out as 'fetch_name_0'; the fetch op's 'name' attribute is the output's
    name for Paddle Inference and paddle2onnx alike."""
    with open(program_path, encoding="utf-8") as f:
        program = json.load(f)
    fetches = [node for node in _nodes(program) if node.get("#") == "1.fetch"]
    if len(fetches) != 1:
        raise ValueError(f"{program_path}: expected one fetch op (the output), found {len(fetches)}")
    attrs = [a for a in fetches[0].get("A", []) if isinstance(a, dict) and a.get("N") == "name"]
    if len(attrs) != 1 or not isinstance(attrs[0].get("AT"), dict):
        raise ValueError(f"{program_path}: the fetch op has no 'name' attribute to set")
    attrs[0]["AT"]["D"] = name
    with atomic_write(program_path, "w") as f:
        json.dump(program, f, separators=(",", ":"))


def _nodes(program):
    """Every dict in a saved PIR program's JSON tree."""
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


# ------------------------------------------------------------------------------------------------- paddle2onnx
P2O_OPSET = 17


class Paddle2OnnxError(ValueError):
    """paddle2onnx failed on a saved program."""


def paddle2onnx_blockers(program_path):
    """What in a saved PIR program (inference.json) paddle2onnx 2.1.0 cannot convert; [] when nothing is found."""
    with open(program_path, encoding="utf-8") as f:
        program = json.load(f)
    masked, bool_constants = 0, []
    for node in _nodes(program):
        kind = node.get("#")
        if isinstance(kind, str) and kind.endswith(".masked_fill"):
            masked += 1
        if kind == "p" and '"0.t_bool"' in json.dumps(node.get("O", {})):
            attrs = node.get("A") or []
            bool_constants.append(str(attrs[-1]) if attrs else "?")
    blockers = []
    if masked:
        blockers.append(f"{masked} pd_op.masked_fill ops (no paddle2onnx converter; mask with paddle.where)")
    if bool_constants:
        blockers.append(f"bool constants {', '.join(bool_constants)} (paddle2onnx writes only float/int constants)")
    return blockers


# In a child process: paddle2onnx aborts the whole process on an operator it does not know. optimize_tool: none of
# its post-passes. Its default (polygraphy constant folding) sets POLYGRAPHY_AUTOINSTALL_DEPS=1, which lets
# polygraphy pip-install packages during a conversion; onnxruntime folds the constants itself when it loads the model.
_P2O_CHILD = """
import sys, paddle2onnx
paddle2onnx.export(sys.argv[1], sys.argv[2], save_file=sys.argv[3], opset_version=int(sys.argv[4]),
                   enable_onnx_checker=True, optimize_tool="none")
print("paddle2onnx_version=" + paddle2onnx.__version__)
"""


def run_paddle2onnx(model_file, params_file, onnx_path, opset):
    """Convert in a child process; returns paddle2onnx's version."""
    done = subprocess.run([sys.executable, "-c", _P2O_CHILD, model_file, params_file, onnx_path, str(opset)],
                          capture_output=True, text=True)
    if done.returncode != 0 or not os.path.isfile(onnx_path):
        tail = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-3:]
        raise Paddle2OnnxError(f"{model_file}: paddle2onnx failed (exit {done.returncode}): {' | '.join(tail)}")
    return next((line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("paddle2onnx_version=")),
                None)
