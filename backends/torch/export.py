"""torch's part of deployment: torch.onnx.export of a Net, batch axis dynamic. deploy/onnx.py builds the folder
around it and checks the model with onnxruntime.
"""
import warnings

import torch

from backends.base import INPUT_KEYS

FRAMEWORK_VERSION = torch.__version__
EXPORTERS = ("dynamo", "legacy")
DEFAULT_OPSET = 18   # torch 2.13's dynamo exporter writes opset 18; converting it down fails on this model


def inputs_wrapper(net, names):
    """``net`` taking only the inputs ``names`` (the manifest's order), in eval mode."""

    class Inputs(torch.nn.Module):
        """Net with only the inputs the model reads, in the manifest's order."""

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, *inputs):
            given = dict(zip(names, inputs))
            return self.net(*(given.get(key) for key in INPUT_KEYS))

    return Inputs().eval()


def eager_logits(module, names, sample):
    """The eager module's logits (numpy) of ``sample`` {name: array}, without autograd."""
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    with torch.no_grad():
        return module(*args).numpy()


def export_onnx(module, names, sample, path, exporter, opset):
    """torch.onnx.export of ``module`` (inputs_wrapper) to ``path``, traced on ``sample``; output 'logits'."""
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    kwargs = dict(input_names=names, output_names=["logits"], opset_version=opset)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=65536)
        kwargs["dynamic_shapes"] = (tuple({0: batch} for _ in names),)
    else:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in names + ["logits"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(module, args, path, dynamo=exporter == "dynamo", **kwargs)
