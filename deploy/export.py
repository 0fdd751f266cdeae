"""Paddle static export: a checkpoint -> an inference folder (deploy/bundle.py) that Paddle Inference loads.

    python run.py --RUN=export --backend=paddle --MODEL trar --DATASET demo --CKPT_PATH ckpts/ckpt_x/epoch10.pdparams
    python -m deploy export --MODEL trar --DATASET demo --CKPT_PATH ckpts/ckpt_x/epoch10.pdparams --out DIR

The Net is wrapped in a Layer that takes only the inputs the model reads (paddle.jit.save refuses inputs a program
does not use), traced with paddle.jit.to_static with a dynamic batch axis, and saved with paddle.jit.save (Paddle 3:
inference.json, the PIR program, + inference.pdiparams, as Paddle's own tools name them; the output is named
``logits``): backends/paddle/export.py. The saved model is then run once by
Paddle Inference and compared with the dynamic graph on a random batch before the folder is put in place.

Static export always runs on Paddle. With --backend=torch the checkpoint is still read by the paddle backend, which
converts a torch .pkl (Linear weights transposed by the model's own layer list) on the way.
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np

from backends import BackendUnavailable, get_backend
from backends.paddle import export as paddle_export
from core import checkpoints, registry
from core.data import fingerprints
from deploy import bundle, c_output, classifier
from formats.layout import CheckpointMismatch

if TYPE_CHECKING:
    from backends.base import Backend
    from core.config import Config

SUPPORTED_MODELS = tuple(dict.fromkeys(m.model_use for m in registry.MODELS.values() if m.exportable))
VERIFY_BATCH = 3
# Exported logits may differ from the dynamic graph's by float rounding only (oneDNN kernels, fused passes).
VERIFY_ATOL = 1e-4

log = logging.getLogger(__name__)


class ExportError(ValueError):
    """The export cannot be made (no checkpoint, a checkpoint that does not fit, a model that is not supported)."""


def export_net(net, cfg, out_dir, token_to_ix, answers, max_token, extra=None):
    """Write the inference folder of a built paddle Net (weights loaded) to ``out_dir``; returns the manifest."""
    from deploy.predict import PaddleRunner
    if cfg.MODEL_USE not in SUPPORTED_MODELS:
        raise ExportError(f"MODEL: static export supports {', '.join(SUPPORTED_MODELS)}, not {cfg.MODEL_USE!r}")
    manifest = bundle.base_manifest(cfg, "paddle", token_to_ix, answers, max_token)
    specs = manifest["inputs"]
    names = [s["name"] for s in specs]
    wrapper = paddle_export.inputs_wrapper(net, names)
    sample = bundle.sample_inputs(specs, VERIFY_BATCH, len(token_to_ix))
    expected = paddle_export.dynamic_logits(net, names, sample)

    stage = bundle.staging_dir(out_dir)
    try:
        with c_output.filtered(2, c_output.STDERR_NOISE):
            paddle_export.save_static(wrapper, specs, os.path.join(stage, paddle_export.PATH_PREFIX))
        runner = PaddleRunner(*_saved_files(stage), threads=1)
        got = runner.run(sample)
        diff = float(np.abs(got - expected).max())
        if got.shape != expected.shape or not diff <= VERIFY_ATOL * max(1.0, float(np.abs(expected).max())):
            raise ExportError(f"{out_dir}: the exported program disagrees with the dynamic model (max abs "
                              f"difference {diff:.3g}, output {got.shape} vs {expected.shape}); nothing was written")
        manifest.update(
            outputs=[{"name": runner.output_names[0], "shape": [-1, len(answers)], "dtype": "float32"}],
            framework="paddle", framework_version=paddle_export.FRAMEWORK_VERSION, verified_max_abs_diff=diff,
            **(extra or {}))
        if registry.model_of(cfg).routes:
            manifest["routing"] = {"ROUTING": cfg.ROUTING, "BINARIZE": bool(cfg.BINARIZE),
                                   "tau": float(net.backbone.tau)}
        return bundle.finish(stage, out_dir, manifest, token_to_ix, answers, cfg)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _saved_files(folder):
    """(program, parameters) of paddle.jit.save's output in ``folder``: the names the bundle lists."""
    names = bundle.RUNTIME_FILES["paddle"]
    return os.path.join(folder, names["model"]), os.path.join(folder, names["params"])


def export_checkpoint(cfg: Config, ckpt_path: str, out_dir: str) -> dict[str, Any]:
    """Build the model of ``cfg`` on Paddle, load ``ckpt_path`` (.pdparams, or a torch .pkl converted on the way),
    and export it to ``out_dir``; returns the manifest."""
    if classifier.handles(cfg):        # a task with its own folder contents (image classification)
        return export_classifier(cfg, ckpt_path, out_dir)
    be = _paddle_backend()
    token_to_ix, answers, max_token = bundle.question_vocabulary(cfg)
    net = be.build_model(cfg, len(token_to_ix), len(answers))
    try:
        meta = be.load_checkpoint(net, ckpt_path)
        fingerprints.check(meta, fingerprints.hashes(token_to_ix, answers), ckpt_path)   # the data's vocabulary
    except CheckpointMismatch as exc:
        raise ExportError(f"the checkpoint does not match the config ({cfg.MODEL} on {cfg.DATASET} with "
                          f"{len(token_to_ix)} words from {cfg.DATA_ROOT}): {exc}") from None
    extra = {"checkpoint": os.path.abspath(ckpt_path), "checkpoint_epoch": (meta or {}).get("epoch")}
    return export_net(net, cfg, out_dir, token_to_ix, answers, max_token, extra)


def export_classifier(cfg: Config, ckpt_path: str, out_dir: str) -> dict[str, Any]:
    """Paddle static export (paddle.jit.save) of a classifier checkpoint, run once by Paddle Inference and compared
    with the dynamic graph before the folder is put in place; returns the manifest."""
    from deploy.predict import PaddleRunner
    be, net, contents, extra = classifier.load(cfg, "paddle", ckpt_path, ExportError)
    manifest = classifier.manifest_of(cfg, "paddle", contents)
    specs = manifest["inputs"]
    sample = classifier.sample_inputs(specs, VERIFY_BATCH)
    expected = be.predict(net, sample)
    stage = bundle.staging_dir(out_dir)
    try:
        net.eval()
        with c_output.filtered(2, c_output.STDERR_NOISE):
            paddle_export.save_static(net, specs, os.path.join(stage, paddle_export.PATH_PREFIX))
        runner = PaddleRunner(*_saved_files(stage), threads=1)
        got = runner.run(sample)
        if got.shape != expected.shape:
            raise ExportError(f"{out_dir}: the exported program gives {got.shape}, the dynamic model {expected.shape}")
        diff = float(np.abs(got - expected).max())
        classifier.check_diff(diff, expected, out_dir, "the exported program", ExportError)
        manifest.update(outputs=[{"name": runner.output_names[0], "shape": [-1, expected.shape[1]],
                                  "dtype": "float32"}],
                        framework="paddle", framework_version=paddle_export.FRAMEWORK_VERSION,
                        verified_max_abs_diff=diff, **extra)
        return bundle.finish_files(stage, out_dir, manifest, contents["files"], cfg)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def find_checkpoint(cfg: Config) -> str:
    """CKPT_PATH, else ckpts/ckpt_<CKPT_VERSION>/epoch<CKPT_EPOCH>.pdparams, else the same name in .pkl."""
    if cfg.CKPT_PATH is None and not cfg.CKPT_EPOCH:
        raise ExportError("CKPT_PATH: export needs a checkpoint; give --CKPT_PATH FILE, or --CKPT_V NAME and "
                          "--CKPT_E N")
    return checkpoints.resume_path(cfg, ".pdparams")


def default_out_dir(cfg: Config, suffix: str = "") -> str:
    """<RESULTS_ROOT>/export/<CKPT_VERSION>_epoch<CKPT_EPOCH><suffix> (_best / _latest for those), or <checkpoint file
    name><suffix> for a CKPT_PATH run: one folder per checkpoint, so exporting another epoch of a run does not replace
    the first."""
    name = cfg.CKPT_VERSION if cfg.CKPT_PATH is not None else \
        f"{cfg.CKPT_VERSION}_{checkpoints.checkpoint_stem(cfg.CKPT_EPOCH)}"
    return os.path.join(cfg.RESULTS_ROOT, "export", name + suffix)


def export_from_config(cfg: Config, be: Backend, out_dir: str | None = None) -> dict[str, Any]:
    """run.py --RUN=export: export the configured checkpoint, logging what was written; raises ValueError
    (ExportError, a checkpoint that cannot be read) or FileNotFoundError, which the command lines turn into one
    line."""
    if be.name != "paddle":
        log.warning(f"note: static export runs on Paddle (paddle.jit.save), not on the {be.name} backend; the "
                    "checkpoint is read by the paddle backend, which converts a torch .pkl on the way")
    ckpt = find_checkpoint(cfg)
    out_dir = out_dir or default_out_dir(cfg)
    bundle.check_out_dir(out_dir)           # before the model is built and traced
    manifest = export_checkpoint(cfg, ckpt, out_dir)
    inputs = ", ".join(f"{s['name']} {tuple(s['shape'])} {s['dtype']}" for s in manifest["inputs"])
    log.info(f"Exported {ckpt} ({cfg.MODEL}, {cfg.DATASET}) to {out_dir}\n  inputs: {inputs}\n"
             f"  checked against the dynamic graph: max abs difference {manifest['verified_max_abs_diff']:.2e}")
    return {"out_dir": out_dir, "checkpoint": ckpt, "manifest": manifest}


def _paddle_backend():
    try:
        return get_backend("paddle")
    except BackendUnavailable as exc:
        raise ExportError(f"static export needs Paddle: {exc}") from None
