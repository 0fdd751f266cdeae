"""ONNX inference folders, checked with onnxruntime, by two routes:

    python -m deploy onnx --MODEL trar --DATASET demo --CKPT_PATH FILE [--out DIR] [--exporter dynamo|legacy]
    python -m deploy onnx --from-paddle EXPORT_DIR [--out DIR]          (paddle2onnx, from a static Paddle export)

Both write an inference folder (deploy/bundle.py) with runtime 'onnx' (model.onnx + vocab, answers, config,
manifest); `python -m deploy predict --model DIR` answers with it through onnxruntime.

1. torch.onnx from the torch backend (works with torch 2.13): the checkpoint may be a .pkl or a .pdparams, the torch
   backend reads both. Needs onnx, onnxscript (dynamo exporter) and onnxruntime.
2. paddle2onnx from the static model: paddle2onnx 2.1.0 converts all four model kinds (TRAR soft, TRAR hard +
   BINARIZE, MCAN, MMNasNet) from Paddle 3.3.1 programs, opset 17; onnxruntime matches Paddle Inference to about 1e-6.
   It needs the masks written as paddle.where and the span masks held as int32 (backends/paddle does so): paddle2onnx
   has no converter for `pd_op.masked_fill` and cannot write a bool constant, and such programs are refused here
   before it runs. paddle2onnx 2.1.0 declares onnx<=1.17.0, which conflicts with the onnx pinned for the torch route;
   install it with `pip install --no-deps paddle2onnx==2.1.0` (the conversion itself is C++ and uses no Python onnx;
   the constant folding it would do with polygraphy is left to onnxruntime, which folds at load). See docs/aistudio.md.

The framework calls of both routes are in backends/torch/export.py and backends/paddle/export.py; this module makes
the folder and checks the model with onnxruntime.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from backends import BackendUnavailable, get_backend
from core.data import fingerprints
from deploy import bundle, classifier
from formats.layout import CheckpointMismatch

if TYPE_CHECKING:
    from core.config import Config

VERIFY_ATOL = 1e-4

log = logging.getLogger(__name__)


class OnnxExportError(ValueError):
    """The ONNX export cannot be made or does not match the torch model."""


def export_torch_net(net, cfg, out_dir, token_to_ix, answers, max_token, exporter="dynamo", opset=None, extra=None):
    """torch.onnx.export of a torch Net (weights loaded), batch axis dynamic; checked with onnxruntime when it is
    installed. Returns the manifest."""
    from backends.torch import export as torch_export
    _check_exporter(exporter)
    manifest = bundle.base_manifest(cfg, "onnx", token_to_ix, answers, max_token)
    names = [s["name"] for s in manifest["inputs"]]
    module = torch_export.inputs_wrapper(net.eval(), names)
    sample = bundle.sample_inputs(manifest["inputs"], 3, len(token_to_ix))
    return _export_checked(module, names, sample, manifest, out_dir, exporter, opset, extra or {},
                           lambda stage, m: bundle.finish(stage, out_dir, m, token_to_ix, answers, cfg))


def _check_exporter(exporter):
    from backends.torch import export as torch_export
    if exporter not in torch_export.EXPORTERS:
        raise OnnxExportError(f"exporter: expected one of {', '.join(torch_export.EXPORTERS)}, got {exporter!r}")


def _export_checked(module, names, sample, manifest, out_dir, exporter, opset, extra, finish):
    """torch.onnx.export of ``module`` into a staging folder, folded into one file and checked with onnxruntime
    against the eager module on ``sample``; ``finish(stage, manifest)`` writes the rest of the folder and puts it in
    place. Returns the manifest."""
    from backends.torch import export as torch_export
    expected = torch_export.eager_logits(module, names, sample)
    opset = int(opset or torch_export.DEFAULT_OPSET)
    stage = bundle.staging_dir(out_dir)
    try:
        path = os.path.join(stage, "model.onnx")
        torch_export.export_onnx(module, names, sample, path, exporter, opset)
        _single_file(path)
        diff = _check_with_onnxruntime(path, sample, expected, out_dir)
        manifest.update(outputs=[{"name": "logits", "shape": [-1, expected.shape[1]], "dtype": "float32"}],
                        framework="torch", framework_version=torch_export.FRAMEWORK_VERSION, exporter=exporter,
                        opset=opset, verified_max_abs_diff=diff, **extra)
        return finish(stage, manifest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _single_file(path):
    """Fold the weights the dynamo exporter writes beside the model (model.onnx.data) into model.onnx, so the
    folder has one model file (an ONNX protobuf holds up to 2 GB; the large models are below 1 GB)."""
    import onnx
    data = [name for name in os.listdir(os.path.dirname(path)) if name.startswith(os.path.basename(path) + ".")]
    if data:
        onnx.save_model(onnx.load(path), path, save_as_external_data=False)
        for name in data:
            os.remove(os.path.join(os.path.dirname(path), name))


def _check_with_onnxruntime(path, sample, expected, out_dir):
    """Max abs difference of onnxruntime's logits from torch's (batch 3, then batch 1); None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        warnings.warn("onnxruntime is not installed: the ONNX model was not checked (pip install onnxruntime)",
                      RuntimeWarning, stacklevel=3)
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    diff = 0.0
    for rows in (slice(None), slice(0, 1)):
        got = session.run(None, {name: value[rows] for name, value in sample.items()})[0]
        if got.shape != expected[rows].shape:
            raise OnnxExportError(f"{out_dir}: onnxruntime gives {got.shape}, torch {expected[rows].shape}")
        diff = max(diff, float(np.abs(got - expected[rows]).max()))
    if not diff <= VERIFY_ATOL * max(1.0, float(np.abs(expected).max())):
        raise OnnxExportError(f"{out_dir}: the ONNX model disagrees with torch (max abs difference {diff:.3g}); "
                              "nothing was written")
    return diff


def export_onnx_checkpoint(cfg: Config, ckpt_path: str, out_dir: str, exporter: str = "dynamo",
                           opset: int | None = None) -> dict[str, Any]:
    if classifier.handles(cfg):        # a task with its own folder contents (image classification)
        return export_classifier_onnx(cfg, ckpt_path, out_dir, exporter, opset)
    try:
        be = get_backend("torch")
    except BackendUnavailable as exc:
        raise OnnxExportError(f"ONNX export goes through torch.onnx: {exc}") from None
    token_to_ix, answers, max_token = bundle.question_vocabulary(cfg)
    net = be.build_model(cfg, len(token_to_ix), len(answers))
    try:
        meta = be.load_checkpoint(net, ckpt_path)
        fingerprints.check(meta, fingerprints.hashes(token_to_ix, answers), ckpt_path)   # the data's vocabulary
    except CheckpointMismatch as exc:
        raise OnnxExportError(f"the checkpoint does not match the config ({cfg.MODEL} on {cfg.DATASET}): "
                              f"{exc}") from None
    extra = {"checkpoint": os.path.abspath(ckpt_path), "checkpoint_epoch": (meta or {}).get("epoch")}
    return export_torch_net(net, cfg, out_dir, token_to_ix, answers, max_token, exporter, opset, extra)


def export_classifier_onnx(cfg: Config, ckpt_path: str, out_dir: str, exporter: str = "dynamo",
                           opset: int | None = None) -> dict[str, Any]:
    """torch.onnx export of a classifier checkpoint, checked with onnxruntime; returns the manifest."""
    _check_exporter(exporter)
    be, net, contents, extra = classifier.load(cfg, "torch", ckpt_path, OnnxExportError)
    manifest = classifier.manifest_of(cfg, "onnx", contents)
    names = [s["name"] for s in manifest["inputs"]]
    sample = classifier.sample_inputs(manifest["inputs"], classifier.VERIFY_BATCH)
    return _export_checked(net.eval(), names, sample, manifest, out_dir, exporter, opset, extra,
                           lambda stage, m: bundle.finish_files(stage, out_dir, m, contents["files"], cfg))


def onnx_from_config(cfg: Config, out_dir: str | None = None, exporter: str = "dynamo",
                     opset: int | None = None) -> dict[str, Any]:
    """python -m deploy onnx: export the configured checkpoint, logging what was written; raises OnnxExportError (a
    ValueError) or FileNotFoundError, which the command line turns into one line."""
    from deploy.export import default_out_dir, find_checkpoint
    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
    except ImportError:
        raise OnnxExportError("ONNX export needs the optional packages onnx, onnxscript and onnxruntime "
                              "(pip install onnx onnxscript onnxruntime)") from None
    ckpt = find_checkpoint(cfg)
    # not <name>_onnx: that is where paddle2onnx (--from-paddle) puts the conversion of the Paddle export <name>
    out_dir = out_dir or default_out_dir(cfg, "_torch_onnx")
    bundle.check_out_dir(out_dir)           # before the model is built and traced
    manifest = export_onnx_checkpoint(cfg, ckpt, out_dir, exporter, opset)
    diff = manifest["verified_max_abs_diff"]
    check = "not checked (no onnxruntime)" if diff is None else f"onnxruntime vs torch: max abs difference {diff:.2e}"
    log.info(f"Exported {ckpt} ({cfg.MODEL}, {cfg.DATASET}) to {out_dir}/model.onnx ({exporter}, opset "
             f"{manifest['opset']}); {check}")
    return {"out_dir": out_dir, "checkpoint": ckpt, "manifest": manifest}


# ------------------------------------------------------------------------------------------------- paddle2onnx

def onnx_from_paddle_folder(model_dir: str, out_dir: str, opset: int | None = None) -> dict[str, Any]:
    """paddle2onnx on an exported Paddle folder, checked against Paddle Inference with onnxruntime; returns the
    manifest of the new folder."""
    from backends.paddle import export as paddle_export
    from deploy.predict import PaddleRunner
    opset = opset or paddle_export.P2O_OPSET
    image_task = classifier.is_classifier_folder(model_dir)
    source = (classifier.ClassifierBundle if image_task else bundle.Bundle)(model_dir, runtime="paddle")
    blockers = paddle_export.paddle2onnx_blockers(source.file("model"))
    if blockers:
        raise OnnxExportError(f"{source.file('model')}: paddle2onnx cannot convert this program: "
                              f"{'; '.join(blockers)}. Use the torch route: python -m deploy onnx --MODEL ... "
                              "--CKPT_PATH ...")
    stage = bundle.staging_dir(out_dir)
    try:
        path = os.path.join(stage, "model.onnx")
        try:
            version = paddle_export.run_paddle2onnx(source.file("model"), source.file("params"), path, opset)
        except paddle_export.Paddle2OnnxError as exc:
            raise OnnxExportError(str(exc)) from None
        _drop_dead_nodes(path)
        opset = _model_opset(path) or opset   # paddle2onnx raises the opset when an operator needs it
        sample = classifier.sample_inputs(source.inputs, 3) if image_task else \
            bundle.sample_inputs(source.inputs, 3, len(source.token_to_ix))
        expected = PaddleRunner(source.file("model"), source.file("params"), threads=1).run(sample)
        diff = _check_with_onnxruntime(path, sample, expected, out_dir)
        manifest = {k: v for k, v in source.manifest.items() if k not in ("files", "sha256")}
        outputs = len(source.class_names) if image_task else len(source.answers)
        manifest.update(runtime="onnx", outputs=[{"name": _output_name(path), "shape": [-1, outputs],
                                                  "dtype": "float32"}],
                        exporter="paddle2onnx", exporter_version=version, opset=opset,
                        verified_max_abs_diff=diff,
                        source=os.path.abspath(model_dir))
        with open(source.file("config"), encoding="utf-8") as f:
            config = f.read()
        if image_task:
            return bundle.finish_files(stage, out_dir, manifest, source.json_files(), config)
        return bundle.finish(stage, out_dir, manifest, source.token_to_ix, source.answers, config)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _drop_dead_nodes(path):
    """Keep only the nodes between the graph's inputs and outputs (paddle2onnx leaves unused Constant nodes, and
    onnxruntime warns about each one when it loads the model)."""
    import onnx
    import onnx.utils
    graph = onnx.load(path, load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    onnx.utils.extract_model(path, path, inputs, [o.name for o in graph.output])


def _model_opset(path):
    import onnx
    imports = onnx.load(path, load_external_data=False).opset_import
    return next((o.version for o in imports if o.domain in ("", "ai.onnx")), None)


def _output_name(path):
    import onnx
    return onnx.load(path, load_external_data=False).graph.output[0].name


def onnx_from_paddle_cli(model_dir: str, out_dir: str | None = None, opset: int | None = None) -> dict[str, Any]:
    """python -m deploy onnx --from-paddle DIR: convert, logging what was written; raises OnnxExportError (a
    ValueError) or FileNotFoundError, which the command line turns into one line."""
    # paddle2onnx is only looked up here: it is imported in the converting child process alone
    missing = [name for name in ("paddle2onnx", "onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise OnnxExportError(f"the paddle2onnx route needs the optional packages paddle2onnx, onnx and onnxruntime "
                              f"({', '.join(missing)} missing: pip install onnx onnxruntime; "
                              "pip install --no-deps paddle2onnx==2.1.0)")
    out_dir = out_dir or os.path.normpath(model_dir) + "_onnx"
    manifest = onnx_from_paddle_folder(model_dir, out_dir, opset)
    log.info(f"Converted {model_dir} to {out_dir}/model.onnx (paddle2onnx, opset {manifest['opset']}); onnxruntime "
             f"vs Paddle Inference: max abs difference {manifest['verified_max_abs_diff']:.2e}")
    return {"out_dir": out_dir, "manifest": manifest}
