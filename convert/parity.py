"""python -m convert parity: the torch and paddle nets of one config, compared layer by layer (in the manner of PaDiff).

    python -m convert parity --MODEL trar --DATASET demo [--ckpt FILE [--paddle-ckpt FILE]] [--steps N]
                             [--report out.json] [--tol 1e-5] [--grad-tol 1e-5] [--train-tol 1e-4]
    python -m convert parity ... --dump torch.npz        # a machine with one framework: its half of the check
    python -m convert parity ... --compare torch.npz     # a machine with the other: the same check against it

Both nets get the same weights: --ckpt loaded by each backend (each reads both frameworks' files), or a random torch
init copied to paddle with its Linear weights transposed; --paddle-ckpt gives the paddle net other weights, e.g. a
conversion's output to check against its source. Inputs: the first batches of the training data of a generated
dataset (--DATASET demo, demo_clevr: generated under DATA_ROOT if missing), else a synthetic batch of the config's
input shapes (answers: the data format's answer-list size, core/registry.py). Checks, fp32 CPU:
0. weights: every state-dict tensor of the two nets (paddle's in torch's layout);
1. eval forward: every module's output, paired by structured name through forward hooks (torch
   register_forward_hook, paddle register_forward_post_hook), in torch's call order; logits are the root's output;
2. gradients of every parameter after one backward of the config's loss, train mode with dropout 0 (or, with
   --dropout, the config's: the two frameworks draw the same masks from core.dropout_masks) (Paddle 3.3.1
   on CPU cannot backprop through nn.LSTM in eval mode) and, for hard routing, the routing blocks in eval mode so no
   Gumbel noise is drawn;
3. the loss of N optimizer steps of each backend's own trainer (Adam, the config's warmup schedule over N steps),
   then the eval logits; skipped for hard routing, whose trainers draw Gumbel noise from two unrelated RNGs.
A layer's or weight's "rel" is max |paddle - torch| / max(1, max |torch|): relative for large values, absolute below 1.
A gradient's is max over its elements of |diff| / (largest + |torch gradient|), largest the net's largest |torch
gradient| (convert.tolerances.gradient_error: an rtol with an atol at the model's gradient scale, one rule for every
parameter); the loss's and the training losses' are |diff| / max(1, |torch loss|).
Three verdicts: weights/forward (0 and 1: what a converted checkpoint needs), gradients (2), training (3). Exit
status 0 when all pass, 1 when weights/forward fails, 2 when only gradients or training fail (the first row above
tolerance is named), 3 on bad input.
A dump (--dump) is a plain npz (no pickled objects: np.load(allow_pickle=False) reads it): a json '__meta__' string
(config, sizes, steps, seed, names, losses) and numbered arrays of one framework's weights, module outputs, gradients,
input batches and logits after training; --compare runs the other framework on the dump's inputs, steps and seed.
"""
import contextlib
import json
import math
import os
import time
import zipfile

import numpy as np

from backends import get_backend
from backends.base import input_keys, net_call, target_key
from convert.checkpoints import check_source, read_source
from convert.manifest import facts_from_state
from convert.tolerances import FORWARD_ATOL, GRAD_RTOL, TRAIN_RTOL, gradient_error
from core import registry
from core.checkpoints import atomic_write
from core.dropout_masks import STREAM as DROPOUT_MASKS
from core.schedules import warmup_lr
from formats import layout, vit_npz
from formats.restricted_pickle import checkpoint_kind

DEFAULT_TOL = FORWARD_ATOL
DEFAULT_GRAD_TOL = GRAD_RTOL
DEFAULT_TRAIN_TOL = TRAIN_RTOL
ROOT_NAME = "<net>"
EXIT_BAD_INPUT = 3
SYNTHETIC_QUESTION_LEN = 14
SYNTHETIC_TOKENS = 100
SYNTHETIC_CLASSES = 10


# ---- the two frameworks, behind the same few calls ------------------------------------------------------------

class _Torch:
    name = "torch"

    def __init__(self):
        import torch

        from backends.torch import backend, layers
        from backends.torch.models import trar
        self.torch, self.backend, self.layers = torch, backend, layers
        self.routing_block = trar.RoutingBlock
        self.be = get_backend("torch")
        self.be.set_device("")

    def modules(self, net):
        return list(net.named_modules())

    def hook(self, module, fn):
        return module.register_forward_hook(fn)

    def is_tensor(self, value):
        return isinstance(value, self.torch.Tensor)

    def numpy(self, tensor):
        return tensor.detach().cpu().numpy()

    def float32(self, tensor):
        return tensor.float()

    def tensors(self, batch):
        return {k: self.torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}

    def no_grad(self):
        return self.torch.no_grad()

    def grads(self, net):
        return {n: None if p.grad is None else self.numpy(p.grad) for n, p in net.named_parameters()}

    def state(self, net):
        return {k: self.numpy(v).copy() for k, v in net.state_dict().items()}

    def load(self, net, state):
        net.load_state_dict({k: self.torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})


class _Paddle:
    name = "paddle"

    def __init__(self):
        import paddle

        from backends.paddle import backend, layers  # first: its import of paddle keeps the root logger as it was
        from backends.paddle.models import trar
        self.paddle, self.backend, self.layers = paddle, backend, layers
        self.routing_block = trar.RoutingBlock
        self.be = get_backend("paddle")
        self.be.set_device("")

    def modules(self, net):
        return list(net.named_sublayers(include_self=True))

    def hook(self, module, fn):
        return module.register_forward_post_hook(fn)

    def is_tensor(self, value):
        return isinstance(value, self.paddle.Tensor)

    def numpy(self, tensor):
        return tensor.numpy()

    def float32(self, tensor):
        return tensor.astype("float32")

    def tensors(self, batch):
        return {k: self.paddle.to_tensor(np.ascontiguousarray(v)) for k, v in batch.items()}

    def no_grad(self):
        return self.paddle.no_grad()

    def grads(self, net):
        return {n: None if p.grad is None else self.numpy(p.grad) for n, p in net.named_parameters()}

    def state(self, net):
        return {k: self.numpy(v).copy() for k, v in net.state_dict().items()}

    def load(self, net, state):
        missing, unexpected = net.set_state_dict(state)
        if missing or unexpected:
            raise layout.CheckpointMismatch(f"paddle net: missing {missing[:3]}, unexpected {unexpected[:3]}")


# ---- inputs ----------------------------------------------------------------------------------------------------

def synthetic_batch(cfg, batch_size, token_size, answer_size, seed=0):
    """Random inputs of the config's shapes in the sample format of docs/architecture.md (train targets included);
    later samples have padded image rows and shorter questions, so every mask is exercised."""
    rng = np.random.default_rng(seed)
    zeros = np.zeros((batch_size, 1), np.float32)
    batch = {"frcn_feat": zeros, "grid_feat": zeros, "bbox_feat": zeros}
    fmt = registry.data_format(cfg.DATA_FORMAT)
    rows, width = cfg.FEAT_SIZE[fmt.name][fmt.image_size]
    key = fmt.image_input
    image = rng.standard_normal((batch_size, rows, width)).astype(np.float32)
    for i in range(1, batch_size):
        image[i, rows - (i * rows) // (2 * batch_size):] = 0
    batch[key] = image
    if cfg.DATA_FORMAT == "vqa" and (cfg.FEAT_TYPE == "region" or cfg.USE_BBOX_FEAT):
        n = cfg.FEAT_SIZE["vqa"]["BBOX_FEAT_SIZE"][0]
        x1, y1 = rng.uniform(0, 400, (batch_size, n)), rng.uniform(0, 300, (batch_size, n))
        x2, y2 = x1 + rng.uniform(8, 200, (batch_size, n)), y1 + rng.uniform(8, 200, (batch_size, n))
        columns = [x1, y1, x2, y2] + ([(x2 - x1) * (y2 - y1)] if cfg.USE_BBOX_FEAT else [])
        batch["bbox_feat"] = np.stack(columns, axis=-1).astype(np.float32)
        batch["bbox_feat"][image[:, :n].any(-1) == 0] = 0
    ques = rng.integers(1, token_size, (batch_size, SYNTHETIC_QUESTION_LEN)).astype(np.int64)
    for i in range(batch_size):
        ques[i, max(1, SYNTHETIC_QUESTION_LEN - 3 * i):] = 0
    batch["ques_ix"] = ques
    if cfg.LOSS_FUNC == "ce":
        batch["ans"] = rng.integers(0, answer_size, (batch_size, 1)).astype(np.int64)
    else:
        scores = np.round(rng.uniform(size=(batch_size, answer_size)) ** 8 * 3) / 3
        if cfg.LOSS_FUNC == "kld":
            scores[:, 0] += 0.1
            scores /= scores.sum(1, keepdims=True)
        batch["ans"] = scores.astype(np.float32)
    return batch


def _stack(samples):
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def synthetic_images(cfg, batch_size, num_classes, seed=0):
    """Random classification inputs: images (B, 3, IMG_SIZE, IMG_SIZE) in [-1, 1] (normalised as the datasets give
    them) and class labels."""
    rng = np.random.default_rng(seed)
    size = cfg.IMG_SIZE
    return {"image": rng.uniform(-1, 1, (batch_size, 3, size, size)).astype(np.float32),
            "label": rng.integers(0, num_classes, batch_size).astype(np.int64)}


def _needed_facts(cfg, facts):
    """The facts build_model needs (those without a default) of a dataset's or checkpoint's facts."""
    task = registry.task(registry.model_of(cfg).task)
    return {name: facts[name] for name in task.facts if name not in task.fact_defaults}


def synthetic_batches(cfg, batch_size, facts, count, seed=0):
    if registry.task_of(cfg).input_keys == ("image",):
        return [synthetic_images(cfg, batch_size, facts["num_classes"], seed=seed + i) for i in range(count)]
    return [synthetic_batch(cfg, batch_size, facts["token_size"], facts["answer_size"], seed=seed + i)
            for i in range(count)]


def default_facts(cfg):
    """The facts of synthetic inputs: a VQA vocabulary of SYNTHETIC_TOKENS and the format's answer list; classes."""
    if registry.task_of(cfg).input_keys == ("image",):
        return {"num_classes": SYNTHETIC_CLASSES}
    return {"token_size": SYNTHETIC_TOKENS, "answer_size": registry.data_format(cfg.DATA_FORMAT).answers}


def generated_batches(cfg, batch_size, count):
    """``count`` consecutive batches of a generated dataset's training data, and its facts (token_size, answer_size;
    num_classes)."""
    from core.data import build_dataset, ensure_generated
    ensure_generated(cfg)
    dataset = build_dataset(cfg, "train")
    if len(dataset) < batch_size * count:
        raise ValueError(f"the {cfg.DATASET} data has {len(dataset)} samples, fewer than {count} batches of "
                         f"{batch_size}")
    batches = [_stack([dataset[i] for i in range(b * batch_size, (b + 1) * batch_size)]) for b in range(count)]
    return batches, _needed_facts(cfg, dataset.facts())


# ---- comparison ------------------------------------------------------------------------------------------------

def _flatten(fw, value, name):
    """[(name, numpy)] of a module output: tensors, and tuples/lists of them as name[0], name[1][0], ... (None
    skipped); anything else is an error, so no output goes unchecked without saying so."""
    if value is None:
        return []
    if isinstance(value, (tuple, list)):
        return [pair for i, v in enumerate(value) for pair in _flatten(fw, v, f"{name}[{i}]")]
    if fw.is_tensor(value):
        return [(name, fw.numpy(value).copy())]
    raise TypeError(f"{name}: cannot compare a module output of type {type(value).__name__}")


def capture_forward(fw, net, batch):
    """{(name, call index): numpy} of every module's output in one eval forward, and the names in call order."""
    outputs, order, calls = {}, [], {}

    def make_hook(name):
        def hook(_module, _inputs, output):
            index = calls[name] = calls.get(name, -1) + 1
            label = name if index == 0 else f"{name}#{index}"
            for key, value in _flatten(fw, output, label):
                outputs[key] = value
                order.append(key)
        return hook

    handles = [fw.hook(module, make_hook(name or ROOT_NAME)) for name, module in fw.modules(net)]
    net.eval()
    try:
        with fw.no_grad():
            net_call(net, fw.tensors({k: batch[k] for k in input_keys(batch)}))
    finally:
        for handle in handles:
            handle.remove()
    return outputs, order


def compare_arrays(ref, got, scale):
    """{'max_abs', 'mean_abs', 'rel'} of got vs ref; rel = max_abs / scale. Shape or finiteness problems -> 'error'."""
    if ref.shape != got.shape:
        return {"max_abs": math.inf, "mean_abs": math.inf, "rel": math.inf,
                "error": f"shape {tuple(got.shape)} vs torch {tuple(ref.shape)}"}
    a, b = ref.astype(np.float64), got.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return {"max_abs": math.inf, "mean_abs": math.inf, "rel": math.inf, "error": "non-finite values"}
    diff = np.abs(b - a)
    max_abs = float(diff.max()) if diff.size else 0.0
    return {"max_abs": max_abs, "mean_abs": float(diff.mean()) if diff.size else 0.0, "rel": max_abs / scale}


def _scale(ref):
    return max(1.0, float(np.max(np.abs(ref.astype(np.float64))))) if ref.size else 1.0


def compare_forward(ref, ref_order, got, tol):
    rows = []
    for name in ref_order:
        if name in got:
            row = {"layer": name, **compare_arrays(ref[name], got[name], _scale(ref[name]))}
            row["ok"] = row["rel"] <= tol
            rows.append(row)
    return _section(rows, tol, unpaired_torch=[n for n in ref_order if n not in got],
                    unpaired_paddle=sorted(n for n in got if n not in ref))


def compare_gradients(ref, got, linear_keys, tol):
    """Per parameter: max abs diff of the gradients (paddle's Linear weights transposed back) and 'rel', the
    gradient_error of convert/tolerances.py: max |diff| / (largest + |torch gradient|) over the elements, with
    largest the net's largest |torch gradient|; a gradient passes when rel <= tol."""
    present = [g for g in ref.values() if g is not None]
    largest = max((float(np.max(np.abs(g))) for g in present if g.size), default=0.0)
    rows = []
    for name, g_ref in ref.items():
        g_got = got.get(name)
        if g_ref is None or g_got is None:
            rows.append({"layer": name, "max_abs": math.inf, "mean_abs": math.inf, "rel": math.inf, "ok": False,
                         "error": f"no gradient in {'torch' if g_ref is None else 'paddle'}"})
            continue
        if name in linear_keys:
            g_got = g_got.T
        row = {"layer": name, **compare_arrays(g_ref, g_got, 1.0)}
        if "error" not in row:
            row["rel"] = gradient_error(g_ref, g_got, largest)
        row["ok"] = row["rel"] <= tol
        rows.append(row)
    section = _section(rows, tol, unpaired_torch=[], unpaired_paddle=sorted(set(got) - set(ref)))
    section["largest_gradient"] = largest
    return section


def _section(rows, tol, **extra):
    bad = next((r["layer"] for r in rows if not r["ok"]), None)
    return {"tolerance": tol, "rows": rows, "first_failure": bad, "passed": bad is None,
            "max_rel": max((r["rel"] for r in rows), default=0.0), **extra}


# ---- the three checks ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _noise_free_training(fw, net, hard_routing):
    """Train mode (dropout 0, or the same CPU dropout masks in both frameworks: see gradient_pass); hard routing's
    blocks in eval mode: no Gumbel noise."""
    net.train()
    if hard_routing:
        for _, module in fw.modules(net):
            if isinstance(module, fw.routing_block):
                module.eval()
    try:
        yield
    finally:
        net.eval()


def gradient_pass(fw, net, cfg, batch, seed=0):
    """(loss, {param: gradient}) of one forward + backward of the config's loss. The dropout mask stream restarts at
    ``seed``, so with dropout on both frameworks drop the same elements."""
    DROPOUT_MASKS.reset(seed)
    loss_fn = fw.backend.make_loss(cfg)
    target = target_key(batch)
    inputs = fw.tensors({k: batch[k] for k in input_keys(batch) + (target,)})
    with _noise_free_training(fw, net, registry.model_of(cfg).routes and cfg.ROUTING == "hard"):
        pred = net_call(net, inputs)
        loss = loss_fn(fw.float32(pred), inputs[target])
        loss.backward()
    return float(fw.numpy(loss)), fw.grads(net)


def train_losses(fw, net, cfg, batches, lrs, seed=0):
    DROPOUT_MASKS.reset(seed)
    trainer = fw.be.make_trainer(net, cfg)
    losses = [trainer.train_step(batch, lr) for batch, lr in zip(batches, lrs)]
    return losses, fw.be.predict(net, batches[0])


def _rel(a, b):
    return abs(a - b) / max(1.0, abs(a))


# ---- driver ----------------------------------------------------------------------------------------------------

FRAMEWORKS = {"torch": _Torch, "paddle": _Paddle}
DUMP_FORMAT = "twinvqa-parity-dump"
DUMP_VERSION = 1
# Config keys that say where or how a run goes, not what the nets compute: left out of a dump's config check.
RUN_KEYS = frozenset({"ALLOW_CPU_FALLBACK", "AMP", "BACKEND", "CKPTS_ROOT", "CKPT_EPOCH", "CKPT_KEEP_LAST", "CKPT_PATH",
                      "CKPT_VERSION", "CONFIG", "DATA_ROOT", "EVAL_BATCH_SIZE", "EVAL_EVERY_EPOCH", "FEAT_STORE",
                      "GLOVE_PATH", "GLOVE_SPACY_MODEL", "GPU", "LOG_EVERY", "MAX_EPOCH", "NUM_WORKERS", "N_GPU",
                      "OVERWRITE", "PIN_MEM", "RESULTS_ROOT", "RESUME", "RESUME_WEIGHTS_ONLY", "RUN_MODE",
                      "SCALAR_LOGS", "SEED", "SKIP_MISSING_FEATS", "TEST_SAVE_PRED", "VERBOSE", "VERSION"})


def checkpoint_facts(cfg, path):
    """build_model's facts of a checkpoint of either framework, or of a Google ViT .npz, for cfg's model."""
    if vit_npz.is_google_npz(path):
        return {"num_classes": int(vit_npz.read_npz(path)["head/bias"].shape[0])}
    framework = "paddle" if checkpoint_kind(path) == "pickle" else "torch"
    check_source(path, framework)
    state, _, _ = read_source(path, framework)
    return facts_from_state(cfg, state, path)


def installed_framework():
    """'torch' when it can be imported, else 'paddle' (the default framework of --dump)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "paddle"
    return "torch"


def config_fingerprint(cfg):
    """The config values that decide the numbers, as json would hold them (a dump's check)."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in RUN_KEYS}
    return json.loads(json.dumps(values, default=str, sort_keys=True))


def run_side(fw, cfg, batches, facts, steps, batch_size, seed, ckpt=None, state=None):
    """One framework's half of the check, everything in numpy and torch's layout (Linear weights [out, in]):
    {'weights', 'forward', 'forward_order', 'loss', 'grads', 'lrs', 'train_losses', 'train_logits'}. The net holds
    ``ckpt``, else ``state`` (torch layout), else its own seeded random init."""
    fw.be.seed(seed)
    net = fw.be.build_model(cfg, **facts)
    linear = fw.layers.linear_weight_names(net)
    if ckpt:
        fw.be.load_checkpoint(net, ckpt)
    elif state is not None:
        fw.load(net, state if fw.name == "torch" else layout.to_paddle_layout(state, linear))
    initial = fw.state(net)

    def torch_layout(arrays):
        return arrays if fw.name == "torch" else layout.to_torch_layout(arrays, linear)

    side = {"framework": fw.name, "weights": torch_layout(initial)}
    side["forward"], side["forward_order"] = capture_forward(fw, net, batches[0])
    side["loss"], grads = gradient_pass(fw, net, cfg, batches[0], seed)
    missing = [n for n, g in grads.items() if g is None]
    side["grads"] = {**torch_layout({n: g for n, g in grads.items() if g is not None}), **dict.fromkeys(missing)}
    fw.load(net, initial)
    side["lrs"] = [warmup_lr(i + 1, float(cfg.LR_BASE), steps * batch_size, batch_size, cfg.WARMUP_EPOCH)
                   for i in range(steps)]
    side["train_losses"], side["train_logits"] = train_losses(fw, net, cfg, batches, side["lrs"], seed)
    return side


def run_parity(cfg, ckpt=None, paddle_ckpt=None, steps=3, batch_size=4, tol=DEFAULT_TOL,
               train_tol=DEFAULT_TRAIN_TOL, seed=0, grad_tol=DEFAULT_GRAD_TOL, dropout=False, dump=None, compare=None,
               framework=None):
    """The report dict (see the module docstring); nothing printed. ``dropout``: keep the config's DROPOUT_R in the
    gradient and training checks (CPU only: there both frameworks draw their masks from core.dropout_masks).
    ``dump``: run only ``framework`` (default: installed_framework()) and write its half to that npz (the report then
    says what was written); ``compare``: read such a dump and run the other framework against it, with the dump's
    inputs, steps, batch size, seed and dropout (``ckpt`` is this machine's weights; default: the dump's)."""
    start = time.perf_counter()
    if paddle_ckpt and not ckpt:
        raise ValueError("--paddle-ckpt needs --ckpt (the torch net's weights to compare against)")
    if paddle_ckpt and (dump or compare):
        raise ValueError("--paddle-ckpt is for a run with both frameworks; with --dump/--compare give each machine's "
                         "checkpoint as --ckpt")
    reference = None
    if compare:
        reference = read_dump(compare, cfg)
        meta = reference["meta"]
        steps, batch_size, seed, dropout = meta["steps"], meta["batch_size"], meta["seed"], meta["dropout"] > 0
        framework = framework or ("paddle" if meta["framework"] == "torch" else "torch")
        if framework == meta["framework"]:
            raise ValueError(f"{compare}: a {framework} dump; compare it with the other framework")
    if not dropout:
        cfg = cfg.copy(DROPOUT_R=0.0)
    names = [framework or installed_framework()] if dump or compare else ["torch", "paddle"]
    count = max(1, steps)
    ckpt_facts = checkpoint_facts(cfg, ckpt) if ckpt else None
    if registry.dataset(cfg.DATASET).generated:
        batches, facts = generated_batches(cfg, batch_size, count)
        data = f"{cfg.DATASET} ({cfg.DATA_ROOT})"
        if ckpt_facts is not None and ckpt_facts != facts:
            raise layout.CheckpointMismatch(f"{ckpt}: ({', '.join(ckpt_facts)}) {tuple(ckpt_facts.values())} differ "
                                            f"from the {cfg.DATASET} data's {tuple(facts.values())}")
    else:
        facts = ckpt_facts or default_facts(cfg)
        batches = synthetic_batches(cfg, batch_size, facts, count, seed)
        data = "synthetic"

    if reference is not None:
        meta = reference["meta"]
        if ckpt_facts is None and data == "synthetic":
            facts = dict(meta["facts"])
        if facts != meta["facts"]:
            raise layout.CheckpointMismatch(f"{compare}: facts {meta['facts']} in the dump, {facts} here")
        batches, data = reference["batches"], f"{meta['data']}, from the dump"

    sides = {}
    for name in names:
        state = None
        if name == "paddle" and not dump and not compare:
            state = None if ckpt else sides["torch"]["weights"]     # the random torch init, copied
        elif reference is not None and not ckpt:
            state = reference["weights"]
        own_ckpt = (paddle_ckpt or ckpt) if name == "paddle" else ckpt
        sides[name] = run_side(FRAMEWORKS[name](), cfg, batches, facts, steps, batch_size, seed, own_ckpt, state)

    report = {"model": cfg.MODEL, "dataset": cfg.DATASET, "ckpt": ckpt, "paddle_ckpt": paddle_ckpt, "data": data,
              "batch_size": batch_size, "token_size": facts.get("token_size"),
              "answer_size": facts.get("answer_size"), "facts": facts,
              "dropout": float(cfg.DROPOUT_R), "steps": steps, "seed": seed,
              "parameters": int(sum(v.size for v in sides[names[0]]["weights"].values())),
              "dump": dump, "compare": compare}
    if dump:
        write_dump(dump, cfg, sides[names[0]], report, batches)
        report.update(framework=names[0], seconds=round(time.perf_counter() - start, 2))
        return report
    if reference is not None:
        sides[reference["meta"]["framework"]] = reference
    ref, got = sides["torch"], sides["paddle"]

    report["weights"] = compare_weights(ref["weights"], got["weights"], tol)
    report["forward"] = compare_forward(ref["forward"], ref["forward_order"], got["forward"], tol)
    grads = compare_gradients(ref["grads"], got["grads"], set(), grad_tol)
    loss_t, loss_p = ref["loss"], got["loss"]
    loss_row = {"layer": "loss", "max_abs": abs(loss_t - loss_p), "mean_abs": abs(loss_t - loss_p),
                "rel": _rel(loss_t, loss_p)}
    loss_row["ok"] = loss_row["rel"] <= grad_tol
    report["gradients"] = {**grads, **_section([loss_row] + grads["rows"], grad_tol), "loss_torch": loss_t,
                           "loss_paddle": loss_p}
    report["train"] = train_check(cfg, ref, got, steps, train_tol)
    return finish_report(report, start)


def finish_report(report, start):
    """The three verdicts, the overall one, the first failure and the exit status (0, or 1 when the weights/forward
    verdict fails, else 2 when the gradients or the training fail)."""
    report["verdicts"] = {"weights/forward": report["weights"]["passed"] and report["forward"]["passed"],
                          "gradients": report["gradients"]["passed"], "training": report["train"]["passed"]}
    report["passed"] = all(report["verdicts"].values())
    report["exit_status"] = 0 if report["passed"] else 1 if not report["verdicts"]["weights/forward"] else 2
    report["first_failure"] = next((f"{k}: {report[k]['first_failure']}" for k in SECTIONS
                                    if report[k].get("first_failure")), None)
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


SECTIONS = ("forward", "weights", "gradients", "train")


def compare_weights(ref, got, tol):
    """Every state-dict tensor of the two nets (both in torch's layout): rel = max abs / max(1, max |torch|)."""
    rows = []
    for name, w in ref.items():
        if name not in got:
            rows.append({"layer": name, "max_abs": math.inf, "mean_abs": math.inf, "rel": math.inf, "ok": False,
                         "error": "not in the paddle net"})
            continue
        row = {"layer": name, **compare_arrays(w, got[name], _scale(w))}
        row["ok"] = row["rel"] <= tol
        rows.append(row)
    return _section(rows, tol, unpaired_torch=[], unpaired_paddle=sorted(set(got) - set(ref)))


# ---- dumps: one framework's half, for machines that have only one -------------------------------------------

def write_dump(path, cfg, side, report, batches):
    """A plain npz (no pickled objects): a json '__meta__' string and numbered arrays, written atomically."""
    meta = {"format": DUMP_FORMAT, "version": DUMP_VERSION, "framework": side["framework"],
            "config": config_fingerprint(cfg),
            **{k: report[k] for k in ("model", "dataset", "ckpt", "data", "batch_size", "steps", "seed", "dropout",
                                      "facts")},
            "weights": list(side["weights"]), "forward": side["forward_order"],
            "grads": list(side["grads"]), "no_grad": [n for n, g in side["grads"].items() if g is None],
            "loss": side["loss"], "lrs": side["lrs"], "train_losses": [float(x) for x in side["train_losses"]],
            "batch_keys": sorted(batches[0]), "batches": len(batches)}
    arrays = {"__meta__": np.array(json.dumps(meta))}
    arrays.update({f"weight.{i}": side["weights"][n] for i, n in enumerate(meta["weights"])})
    arrays.update({f"forward.{i}": side["forward"][n] for i, n in enumerate(meta["forward"])})
    arrays.update({f"grad.{i}": side["grads"][n] for i, n in enumerate(meta["grads"])
                   if side["grads"][n] is not None})
    arrays.update({f"batch.{b}.{k}": np.asarray(batch[k]) for b, batch in enumerate(batches) for k in batch})
    arrays["train_logits"] = np.asarray(side["train_logits"])
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def read_dump(path, cfg):
    """The side dict of a dump (as run_side's, plus 'meta' and 'batches'); one-line errors for a file that is not a
    dump, or one made with another config (the keys that differ are named)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--compare: no such file {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a parity dump (python -m convert parity --dump): {exc}") from None
    if meta.get("format") != DUMP_FORMAT or meta.get("version") != DUMP_VERSION:
        raise ValueError(f"{path}: not a version-{DUMP_VERSION} parity dump (format {meta.get('format')!r}, "
                         f"version {meta.get('version')!r})")
    # the dump's config is the one it ran: DROPOUT_R 0 unless it ran with --dropout
    here = config_fingerprint(cfg if meta["dropout"] else cfg.copy(DROPOUT_R=0.0))
    differ = sorted(k for k in set(here) | set(meta["config"]) if here.get(k) != meta["config"].get(k))
    if differ:
        shown = ", ".join(f"{k} {meta['config'].get(k)!r} in the dump, {here.get(k)!r} here" for k in differ[:3])
        raise ValueError(f"{path}: dumped with another config: {shown}" + (" ..." if len(differ) > 3 else ""))
    side = {"meta": meta, "framework": meta["framework"], "loss": meta["loss"], "lrs": meta["lrs"],
            "train_losses": meta["train_losses"], "train_logits": arrays["train_logits"],
            "weights": {n: arrays[f"weight.{i}"] for i, n in enumerate(meta["weights"])},
            "forward": {n: arrays[f"forward.{i}"] for i, n in enumerate(meta["forward"])},
            "forward_order": meta["forward"],
            "grads": {n: None if n in meta["no_grad"] else arrays[f"grad.{i}"] for i, n in enumerate(meta["grads"])},
            "batches": [{k: arrays[f"batch.{b}.{k}"] for k in meta["batch_keys"]} for b in range(meta["batches"])]}
    return side


def train_check(cfg, ref, got, steps, tol):
    """The training losses and the logits after the steps, of the torch side ``ref`` and the paddle side ``got``."""
    section = {"tolerance": tol, "steps": steps, "skipped": None, "passed": True, "first_failure": None}
    if steps <= 0:
        section["skipped"] = "no steps requested"
        return section
    if registry.model_of(cfg).routes and cfg.ROUTING == "hard":
        section["skipped"] = ("hard routing: the trainers draw Gumbel noise in training, from the two frameworks' "
                              "unrelated RNGs")
        return section
    losses_t, logits_t = ref["train_losses"], ref["train_logits"]
    losses_p, logits_p = got["train_losses"], got["train_logits"]
    rows = [{"layer": f"step {i + 1} loss", "max_abs": abs(a - b), "mean_abs": abs(a - b), "rel": _rel(a, b)}
            for i, (a, b) in enumerate(zip(losses_t, losses_p))]
    rows.append({"layer": f"logits after {steps} steps", **compare_arrays(logits_t, logits_p, _scale(logits_t))})
    for row in rows:
        row["ok"] = row["rel"] <= tol
    section.update(_section(rows, tol), steps=steps, lrs=ref["lrs"], losses_torch=losses_t, losses_paddle=losses_p,
                   skipped=None)
    return section


# ---- output ----------------------------------------------------------------------------------------------------

def _fmt(x):
    return "inf" if x == math.inf else f"{x:.3g}"


def format_section(title, section):
    if section.get("skipped"):
        return [f'{title}: skipped ({section["skipped"]})']
    rows = section["rows"]
    width = max([len(r["layer"]) for r in rows] + [5])
    lines = [f"{title}: {len(rows)} rows, tolerance {section['tolerance']:g}",
             f"  {'layer':<{width}}  {'max abs':>9}  {'mean abs':>9}  {'rel':>9}"]
    for r in rows:
        mark = "  <-- first above tolerance" if r["layer"] == section["first_failure"] else \
            ("  (above tolerance)" if not r["ok"] else "")
        note = f"  [{r['error']}]" if r.get("error") else ""
        lines.append(f"  {r['layer']:<{width}}  {_fmt(r['max_abs']):>9}  {_fmt(r['mean_abs']):>9}  "
                     f"{_fmt(r['rel']):>9}{mark}{note}")
    for key in ("unpaired_torch", "unpaired_paddle"):
        if section.get(key):
            lines.append(f"  {key.replace('_', ' ')} (not compared): {', '.join(section[key])}")
    return lines


def format_weights(section):
    """The weights table, shortened to its rows above tolerance: a converted checkpoint's are usually all exact."""
    bad = [r for r in section["rows"] if not r["ok"]]
    if not bad:
        return [f"weights: {len(section['rows'])} tensors, all within tolerance {section['tolerance']:g} "
                f"(max rel {_fmt(section['max_rel'])})"]
    # the overall first failure is a forward row (SECTIONS): the arrow marks that one, in the forward table
    lines = format_section("weights", {**section, "rows": bad, "first_failure": None})
    lines[0] = (f"weights: {len(bad)} of {len(section['rows'])} tensors above tolerance {section['tolerance']:g}, "
                f"rel = max abs / max(1, max |torch|)")
    return lines


def verdict_line(report):
    """The last line: the overall verdict, then each of the three (weights/forward decides a converted checkpoint)."""
    def word(name, ok, skipped=None):
        return f"{name} {'skipped' if skipped else 'passed' if ok else 'FAILED'}"
    v = report["verdicts"]
    weights_bad = report["weights"]["first_failure"]
    parts = [word("weights/forward", v["weights/forward"])
             + (f" (weights differ first in {weights_bad})" if weights_bad else ""),
             word("gradients", v["gradients"]), word("training", v["training"], report["train"].get("skipped"))]
    head = "PASSED" if report["passed"] else f"FAILED: first above tolerance: {report['first_failure']}"
    return f"{head} ({', '.join(parts)}; {report['seconds']} s)"


def format_report(report):
    if report.get("dump"):
        return (f"parity dump of {report['model']} / {report['dataset']} ({report['framework']}, "
                f"{report['parameters']:,} parameters, batch {report['batch_size']} of {report['data']} data, "
                f"{report['steps']} training steps) written to {report['dump']} ({report['seconds']} s); compare it "
                f"on a machine with the other framework: python -m convert parity ... --compare {report['dump']}")
    weights = report["ckpt"] or ("the dump's" if report.get("compare") else "random torch init copied to paddle")
    lines = [f"parity {report['model']} / {report['dataset']}: {report['parameters']:,} parameters, "
             f"batch {report['batch_size']} of {report['data']} data, weights {weights}"
             + (f" (paddle: {report['paddle_ckpt']})" if report["paddle_ckpt"] else "")
             + (f"; against the dump {report['compare']}" if report.get("compare") else "")]
    lines += format_weights(report["weights"])
    lines += format_section("forward (eval), rel = max abs / max(1, max |torch|)", report["forward"])
    g = report["gradients"]
    lines += format_section(f"gradients (loss torch {g['loss_torch']:.7g}, paddle {g['loss_paddle']:.7g}), "
                            f"rel = max |diff| / (largest gradient {g['largest_gradient']:.3g} + |torch grad|)", g)
    lines += format_section("training (each backend's trainer, Adam)", report["train"])
    lines.append(verdict_line(report))
    return "\n".join(lines)


def write_report(path, report):
    with atomic_write(path, "w") as f:
        json.dump(report, f, indent=1, default=float, allow_nan=True)
