"""The backend runtime on a tiny TRAR, once per framework: train steps, loss formulas, gradient accumulation,
clipping, checkpoints with resume, prediction mode, loaders and devices."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.model_configs import ANSWER_SIZE, TOKEN_SIZE, make_batch, named_grads, numpy_state, tiny_cfg

BATCH = 4


def _cfg(dataset="vqa", model="trar", **overrides):
    # soft routing: hard routing draws Gumbel noise in eval too, so predict and train_step would see other alphas
    settings = dict(BATCH_SIZE=BATCH, DROPOUT_R=0.0, ROUTING="soft", BINARIZE=False)
    settings.update(overrides)
    return tiny_cfg(model, dataset, **settings)


def _batch(cfg, seed=0):
    batch = make_batch(cfg, batch_size=cfg.BATCH_SIZE, seed=seed, padded_tokens=((0, 9), (1, 4), (2, 1), (3, 6)))
    rng = np.random.default_rng(seed + 100)
    if cfg.DATA_FORMAT == "clevr":
        batch["ans"] = rng.integers(0, ANSWER_SIZE, size=(cfg.BATCH_SIZE, 1)).astype(np.int64)
    elif cfg.LOSS_FUNC == "kld":
        keep = rng.uniform(size=(cfg.BATCH_SIZE, ANSWER_SIZE)) > 0.5
        scores = rng.uniform(size=(cfg.BATCH_SIZE, ANSWER_SIZE)) * keep
        scores[:, 0] += 0.1
        batch["ans"] = (scores / scores.sum(1, keepdims=True)).astype(np.float32)
    else:
        batch["ans"] = np.round(rng.uniform(size=(cfg.BATCH_SIZE, ANSWER_SIZE)) * 3) / 3
        batch["ans"] = batch["ans"].astype(np.float32)
    return batch


def _net(backend, cfg, seed=0):
    backend.set_device("")
    backend.seed(seed)
    return backend.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)


def _fw(backend):
    return backend.name


def _params(backend, net):
    """A copy of the weights (torch's .numpy() shares memory with the live parameters)."""
    return {k: v.copy() for k, v in numpy_state(_fw(backend), net).items()}


def _record_forward_batches(net):
    """A list that collects the batch size of every forward call of ``net`` (a forward pre-hook, in both
    frameworks: hook(layer, positional inputs), the first input being frcn_feat)."""
    sizes = []
    net.register_forward_pre_hook(lambda layer, inputs: sizes.append(int(inputs[0].shape[0])))
    return sizes


def _max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def _log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def _expected_loss(cfg, logits, ans):
    """The original loss in numpy: BCE-with-logits / KL / CE, summed over the whole batch x answers."""
    x = logits.astype(np.float64)
    if cfg.LOSS_FUNC == "bce":
        return float(np.sum(np.maximum(x, 0) - x * ans + np.log1p(np.exp(-np.abs(x)))))
    if cfg.LOSS_FUNC == "kld":
        t = ans.astype(np.float64)
        return float(np.sum(np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - _log_softmax(x)), 0.0)))
    return float(-np.sum(_log_softmax(x)[np.arange(len(x)), ans.reshape(-1)]))


@pytest.mark.parametrize("model, dataset, loss", [("trar", "vqa", "bce"), ("trar", "vqa", "kld"),
                                                  ("trar", "clevr", "ce"), ("mcan_small", "vqa", "bce")])
def test_train_step_returns_the_summed_loss(backend, model, dataset, loss):
    cfg = _cfg(dataset, model, LOSS_FUNC=loss)
    net = _net(backend, cfg)
    batch = _batch(cfg)
    expected = _expected_loss(cfg, backend.predict(net, batch), batch["ans"])
    got = backend.make_trainer(net, cfg).train_step(batch, 1e-3)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-5)


def test_loss_goes_down_on_a_fixed_batch(backend):
    cfg = _cfg()
    net = _net(backend, cfg)
    trainer = backend.make_trainer(net, cfg)
    batch = _batch(cfg)
    batch["ans"] = (batch["ans"] > 0.5).astype(np.float32)   # hard targets: the loss can go towards 0
    losses = [trainer.train_step(batch, 3e-3) for _ in range(6)]
    assert losses[-1] < 0.6 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


@pytest.mark.parametrize("model", ["trar", "mcan_small"])
def test_accumulation_equals_one_big_batch(backend, model):
    """ACCU=2 over two sub-batches of 2 gives the full batch's gradient (sum reduction) and the same step."""
    results = {}
    for accu in (1, 2):
        cfg = _cfg(model=model, GRAD_ACCU_STEPS=accu)
        net = _net(backend, cfg, seed=3)
        forward_batches = _record_forward_batches(net)
        loss = backend.make_trainer(net, cfg).train_step(_batch(cfg), 1e-3)
        assert forward_batches == ([BATCH] if accu == 1 else [BATCH // 2, BATCH // 2])   # really split
        results[accu] = (loss, named_grads(_fw(backend), net), _params(backend, net))
    (loss1, grads1, params1), (loss2, grads2, params2) = results[1], results[2]
    assert loss2 == pytest.approx(loss1, rel=1e-6)
    top = max(float(np.abs(g).max()) for g in grads1.values())
    for name, g in grads1.items():
        assert np.abs(grads2[name] - g).max() <= 1e-5 * np.abs(g).max() + 1e-7 * top, name
    # Adam's first step moves each weight by lr * g / (|g| + eps), about lr * sign(g). Some gradients are zero in
    # exact arithmetic (attention key biases: softmax ignores a constant added to every score) and hold float noise
    # whose sign decides that move; compare the weights whose gradient is well above the noise.
    live = {k: np.abs(g) > 1e-6 * top for k, g in grads1.items()}
    assert sum(m.sum() for m in live.values()) > 0.9 * sum(m.size for m in live.values())
    for name, mask in live.items():
        assert np.abs(params1[name] - params2[name])[mask].max(initial=0.0) < 1e-6, name


@pytest.mark.parametrize("eps, most", [(1e-9, 1.01), (1e5, 0.01)])
def test_opt_params_reach_adam(backend, eps, most):
    """Adam's first step moves a weight by lr * g / (|g| + eps): about lr with eps 1e-9, far less with eps 1e5."""
    cfg = _cfg(OPT_PARAMS={"betas": (0.9, 0.98), "eps": eps})
    net = _net(backend, cfg)
    before = _params(backend, net)
    backend.make_trainer(net, cfg).train_step(_batch(cfg), 1e-2)
    moved = _max_diff(before, _params(backend, net))
    assert 0 < moved <= most * 1e-2


def test_unknown_opt_param_is_named(backend):
    cfg = _cfg(OPT_PARAMS={"betas": (0.9, 0.98), "momentum": 0.9})
    with pytest.raises(ValueError, match="OPT_PARAMS: unknown Adam setting momentum"):
        backend.make_trainer(_net(backend, cfg), cfg)


def test_accumulation_keeps_a_short_last_batch(backend):
    """A batch shorter than BATCH_SIZE is split into SUB_BATCH_SIZE pieces with nothing dropped."""
    cfg = _cfg(GRAD_ACCU_STEPS=2)
    batch = {k: v[:3] for k, v in _batch(cfg).items()}
    net = _net(backend, cfg)
    expected = _expected_loss(cfg, backend.predict(net, batch), batch["ans"])
    forward_batches = _record_forward_batches(net)
    assert backend.make_trainer(net, cfg).train_step(batch, 1e-3) == pytest.approx(expected, rel=1e-5)
    assert forward_batches == [2, 1]


@pytest.mark.parametrize("clip_fraction", [0.25, 4.0], ids=["clipped", "below_threshold"])
def test_clipping_follows_the_torch_formula(backend, clip_fraction):
    """Gradients after a step with GRAD_NORM_CLIP = c equal g * min(1, c / (||g|| + 1e-6)), ||g|| from numpy."""
    cfg = _cfg()
    batch = _batch(cfg)
    plain = _net(backend, cfg, seed=5)
    backend.make_trainer(plain, cfg).train_step(batch, 0.0)
    raw = named_grads(_fw(backend), plain)
    norm = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in raw.values())))
    clip = clip_fraction * norm
    clipped_cfg = _cfg(GRAD_NORM_CLIP=clip)
    net = _net(backend, clipped_cfg, seed=5)
    backend.make_trainer(net, clipped_cfg).train_step(batch, 0.0)
    got = named_grads(_fw(backend), net)
    coef = min(1.0, clip / (norm + 1e-6))
    for name, g in raw.items():
        np.testing.assert_allclose(got[name], g * coef, rtol=1e-4, atol=1e-7 * norm, err_msg=name)
    got_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in got.values()))
    assert got_norm == pytest.approx(min(norm, clip), rel=1e-4)


def test_save_load_predict_and_resume(backend, tmp_path):
    """Logits survive save -> load; a resumed trainer takes the same next step as the uninterrupted one."""
    cfg = _cfg()
    batch, next_batch = _batch(cfg, seed=0), _batch(cfg, seed=1)
    net = _net(backend, cfg)
    trainer = backend.make_trainer(net, cfg)
    trainer.train_step(batch, 1e-3)
    trainer.train_step(batch, 1e-3)
    path = str(tmp_path / f"epoch2{backend.checkpoint_ext}")
    trainer.save(path, 2, 5e-4)
    logits = backend.predict(net, batch)

    _net(backend, cfg, seed=9)                    # builds layers first, so paddle's internal names shift
    resumed = _net(backend, cfg, seed=7)
    meta = backend.load_checkpoint(resumed, path)
    assert meta["epoch"] == 2 and meta["lr_base"] == pytest.approx(5e-4)
    np.testing.assert_array_equal(backend.predict(resumed, batch), logits)
    resumed_trainer = backend.make_trainer(resumed, cfg)
    resumed_trainer.load_optimizer_state(meta)

    trainer.train_step(next_batch, 1e-3)
    resumed_trainer.train_step(next_batch, 1e-3)
    assert _max_diff(_params(backend, net), _params(backend, resumed)) < 1e-6

    fresh = _net(backend, cfg, seed=7)            # without the Adam state the step differs: the test can fail
    backend.load_checkpoint(fresh, path)
    backend.make_trainer(fresh, cfg).train_step(next_batch, 1e-3)
    assert _max_diff(_params(backend, net), _params(backend, fresh)) > 1e-5


def test_save_is_atomic_and_leaves_no_temp_files(backend, tmp_path):
    cfg = _cfg()
    trainer = backend.make_trainer(_net(backend, cfg), cfg)
    trainer.save(str(tmp_path / f"epoch1{backend.checkpoint_ext}"), 1, 1e-4)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = ["epoch1.pkl"] if backend.name == "torch" else ["epoch1.pdopt", "epoch1.pdparams"]
    assert names == expected


@pytest.mark.parametrize("train_mode", [True, False])
def test_predict_restores_the_mode(backend, train_mode):
    cfg = _cfg(DROPOUT_R=0.5)
    net = _net(backend, cfg)
    net.train() if train_mode else net.eval()
    batch = _batch(cfg)
    first = backend.predict(net, batch)
    assert net.training == train_mode
    assert first.dtype == np.float32 and first.shape == (cfg.BATCH_SIZE, ANSWER_SIZE)
    np.testing.assert_array_equal(backend.predict(net, batch), first)   # eval mode: dropout off


def test_routing_alphas_after_predict(backend):
    cfg = _cfg()
    net = _net(backend, cfg)
    backend.predict(net, _batch(cfg))
    alphas = backend.routing_alphas(net)
    assert len(alphas) == cfg.LAYER
    for a in alphas:
        assert a.shape == (cfg.BATCH_SIZE, len(cfg.ORDERS))
        np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-5)   # soft routing: a softmax over the spans


class _Numbered:
    """Sample i holds i in every field, so a batch shows which indices it came from."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"ques_ix": np.full((3,), i, np.int64), "frcn_feat": np.full((2, 2), i, np.float32)}


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_follows_the_batch_sampler(backend, workers):
    order = [np.array([3, 1], np.int64), np.array([0, 9, 4], np.int64), np.array([7], np.int64)]
    loader = backend.make_loader(_Numbered(), order, num_workers=workers, pin_memory=True)
    seen = []
    for batch in loader:
        ques = np.asarray(batch["ques_ix"].numpy())
        assert ques.dtype == np.int64 and batch["frcn_feat"].numpy().dtype == np.float32
        seen.append(ques[:, 0].tolist())
    assert seen == [b.tolist() for b in order]


def test_loader_batches_train_and_predict(backend):
    """Framework batches from the loader feed train_step and predict like numpy batches do."""
    cfg = _cfg()
    batch = _batch(cfg)
    samples = [{k: v[i] for k, v in batch.items()} for i in range(cfg.BATCH_SIZE)]
    net = _net(backend, cfg)
    expected = backend.predict(net, batch)
    (framework_batch,) = list(backend.make_loader(samples, [np.arange(cfg.BATCH_SIZE)], num_workers=0))
    np.testing.assert_allclose(backend.predict(net, framework_batch), expected, rtol=1e-6, atol=1e-6)
    assert backend.make_trainer(net, cfg).train_step(framework_batch, 1e-3) > 0


def test_seed_makes_models_repeatable(backend):
    cfg = _cfg()
    a, b = _params(backend, _net(backend, cfg, seed=11)), _params(backend, _net(backend, cfg, seed=11))
    c = _params(backend, _net(backend, cfg, seed=12))
    assert _max_diff(a, b) == 0.0 and _max_diff(a, c) > 0.0


def test_device_without_a_gpu_is_an_error_naming_the_flag(backend):
    """--GPU=0 on a machine without a usable GPU: an error naming --GPU (issue 28); the CPU only with
    ALLOW_CPU_FALLBACK (core.distributed.set_device, tests/test_distributed.py)."""
    from core.distributed import GPUUnavailable
    assert backend.set_device("") == "cpu"
    assert backend.set_device(None) == "cpu"
    if _has_gpu(backend):
        pytest.skip("a GPU is present")
    with pytest.raises(GPUUnavailable, match=r"--GPU=0 but \w+ sees no CUDA device.*ALLOW_CPU_FALLBACK=True"):
        backend.set_device("0")
    assert str(backend.device) == "cpu"


def test_amp_on_cpu_warns_and_trains(backend):
    cfg = _cfg(AMP=True)
    net = _net(backend, cfg)
    if _has_gpu(backend):
        pytest.skip("a GPU is present")
    with pytest.warns(RuntimeWarning, match="AMP"):
        trainer = backend.make_trainer(net, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert np.isfinite(trainer.train_step(_batch(cfg), 1e-3))


def _has_gpu(backend):
    if backend.name == "torch":
        import torch
        return torch.cuda.is_available()
    import paddle
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def test_importing_the_paddle_backend_leaves_the_root_logger_alone():
    """Paddle's import gives the root logger an INFO handler; backends.paddle undoes it (a fresh process)."""
    pytest.importorskip("paddle")
    code = ("import logging, backends.paddle; root = logging.getLogger(); "
            "print(root.handlers == [], root.level == logging.WARNING)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env={**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "default"})
    assert out.stdout.split()[-2:] == ["True", "True"], out.stderr
    # nor does it print Paddle's import notes on OMP_NUM_THREADS (set on purpose) and ccache (no C++ built here)
    assert "OMP_NUM_THREADS" not in out.stderr and "ccache" not in out.stderr, out.stderr
