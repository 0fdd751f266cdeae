"""The CPU kernel choices: core/cpu.py's reading of /proc/cpuinfo, Paddle's MKL_DEBUG_CPU_TYPE, torch's oneDNN
Linear."""
import json
import os
import platform
import subprocess
import sys

import pytest

from core.cpu import cpu_info, has_avx512, is_amd, mkl_debug_cpu_type

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKX = "avx512f avx512cd avx512bw avx512dq avx512vl"


def _cpuinfo(tmp_path, vendor, flags):
    path = tmp_path / "cpuinfo"
    block = f"processor\t: {{n}}\nvendor_id\t: {vendor}\nmodel name\t: some cpu\nflags\t\t: {flags}\n\n"
    path.write_text(block.format(n=0) + block.format(n=1))
    return cpu_info(str(path))


@pytest.mark.parametrize("vendor, flags, expected", [
    ("AuthenticAMD", f"fpu sse2 avx avx2 fma {SKX} avx512_vnni", "7"),
    ("AuthenticAMD", "fpu sse2 avx avx2 fma avx512f", "5"),  # AVX-512 foundation alone is not Skylake-X's set
    ("AuthenticAMD", "fpu sse2 avx", None),
    ("GenuineIntel", f"fpu sse2 avx avx2 fma {SKX}", None),
])
def test_mkl_cpu_type_follows_vendor_and_flags(tmp_path, vendor, flags, expected):
    info = _cpuinfo(tmp_path, vendor, flags)
    assert info[0] == vendor and "avx" in info[1]
    assert is_amd(info) == (vendor == "AuthenticAMD")
    assert has_avx512(info) == (SKX in flags)
    assert mkl_debug_cpu_type(info) == expected


def test_unreadable_cpuinfo_knows_nothing(tmp_path):
    info = cpu_info(str(tmp_path / "missing"))
    assert info == ("", frozenset())
    assert mkl_debug_cpu_type(info) is None


def _paddle_env(extra, cpuinfo):
    """MKL_DEBUG_CPU_TYPE after importing backends.paddle in a fresh process whose core.cpu reads the file cpuinfo."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    env.update(extra, TWINVQA_TEST_CPUINFO=str(cpuinfo))
    code = ("import os, core.cpu; real = core.cpu.cpu_info; "
            "core.cpu.cpu_info = lambda path=None: real(os.environ['TWINVQA_TEST_CPUINFO']); "
            "import backends.paddle; print(os.environ.get('MKL_DEBUG_CPU_TYPE', 'unset'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_paddle_backend_sets_the_mkl_cpu_type_unless_the_user_did(tmp_path):
    amd, intel = tmp_path / "amd", tmp_path / "intel"
    amd.mkdir()
    intel.mkdir()
    _cpuinfo(amd, "AuthenticAMD", f"fpu sse2 avx avx2 fma {SKX}")
    _cpuinfo(intel, "GenuineIntel", f"fpu sse2 avx avx2 fma {SKX}")
    assert _paddle_env({}, amd / "cpuinfo") == "7"
    assert _paddle_env({}, intel / "cpuinfo") == "unset"
    assert _paddle_env({"MKL_DEBUG_CPU_TYPE": "5"}, amd / "cpuinfo") == "5"


def _paddle_import_order(paddle_first, extra=(), via_get_backend=False):
    """(stride flag, GPUs paddle sees, [(RuntimeWarning text, the file it names)]) after the paddle backend's import
    in a fresh process with OMP_NUM_THREADS unset (unless ``extra`` sets it), paddle imported before it or not, on a
    machine said to have 4 cores."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "FLAGS_use_stride_kernel")}
    env.update(extra)
    backend = "from backends import get_backend; get_backend('paddle')" if via_get_backend else "import backends.paddle"
    code = ("import json, os, warnings; os.cpu_count = lambda: 4\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            f"    {'import paddle; ' if paddle_first else ''}{backend}\n"
            "import paddle\n"
            "print(paddle.get_flags(['FLAGS_use_stride_kernel'])['FLAGS_use_stride_kernel'])\n"
            "print(paddle.device.cuda.device_count())\n"
            "print(json.dumps([[str(w.message), w.filename] for w in caught if w.category is RuntimeWarning]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    flag, gpus, warned = out.stdout.strip().splitlines()[-3:]
    return flag, int(gpus), json.loads(warned)


@pytest.mark.parametrize("via_get_backend", [False, True])
def test_paddle_imported_first_gets_the_stride_flag_and_a_threads_warning(via_get_backend):
    flag, _, warned = _paddle_import_order(paddle_first=False, via_get_backend=via_get_backend)
    assert (flag, warned) == ("False", [])
    flag, gpus, warned = _paddle_import_order(paddle_first=True, via_get_backend=via_get_backend)
    assert flag == "False"    # set through paddle.set_flags after the fact
    if gpus:                  # the warning is about CPU training
        assert warned == []
    else:
        assert len(warned) == 1
        text, filename = warned[0]
        assert "paddle was imported before backends.paddle" in text and "OMP_NUM_THREADS=4" in text
        assert filename == "<string>"   # the user's line, not the backend's or importlib's
    # the user's own settings, from the process's start: kept, nothing to warn about
    for extra in ({"OMP_NUM_THREADS": "4", "FLAGS_use_stride_kernel": "1"}, {"OMP_NUM_THREADS": "1"}):
        flag, _, warned = _paddle_import_order(paddle_first=True, extra=extra, via_get_backend=via_get_backend)
        assert warned == [] and flag == ("True" if "FLAGS_use_stride_kernel" in extra else "False")


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "i686"),
                    reason="vendor_id in /proc/cpuinfo: x86 Linux only")
def test_default_cpuinfo_path_is_read_on_linux():
    vendor, flags = cpu_info()
    assert vendor, "cpu_info() read no vendor_id from its default path"


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 9, 48), (5, 48), (6, 7, 16)])   # 16 inputs < 32 outputs: the other transpose
def test_onednn_linear_matches_mkl_linear(bias, shape):
    """The oneDNN products (forward, input and weight gradients) against torch's F.linear (MKL): two kernels."""
    from backends.torch import cpu_ops
    assert cpu_ops._LINEAR_OP is not None, "the pinned torch build has mkldnn::_linear_pointwise"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen, requires_grad=True)
    weight = torch.randn(32, shape[-1], generator=gen, requires_grad=True)
    b = torch.randn(32, generator=gen, requires_grad=True) if bias else None
    grad = torch.randn(*shape[:-1], 32, generator=gen)
    results = []
    for fn in (cpu_ops._OneDnnLinear.apply, torch.nn.functional.linear):
        out = fn(x, weight, b)
        inputs = [x, weight] + ([b] if bias else [])
        results.append([out] + list(torch.autograd.grad(out, inputs, grad)))
    for ours, ref in zip(*results):
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_onednn_linear_only_when_training_or_predicting_eagerly(monkeypatch):
    """A traced graph (ONNX export's path) gets aten::linear, eager calls get the oneDNN op when it is chosen."""
    from backends.torch import cpu_ops, layers
    monkeypatch.setattr(cpu_ops, "ONEDNN_LINEAR", True)
    lin = layers.Linear(8, 4)
    x = torch.randn(2, 8)
    calls = []
    real = cpu_ops._onednn
    monkeypatch.setattr(cpu_ops, "_onednn", lambda *a: calls.append(1) or real(*a))
    torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-6)
    assert calls, "the eager forward should go through oneDNN"
    graph = torch.jit.trace(lin, x).graph
    assert "aten::linear" in str(graph) and "mkldnn" not in str(graph)
    monkeypatch.setattr(cpu_ops, "ONEDNN_LINEAR", False)
    calls.clear()
    lin(x)
    assert not calls


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False)])
def test_onednn_linear_choice_by_environment(monkeypatch, value, expected):
    from backends.torch import cpu_ops
    monkeypatch.setenv("TWINVQA_ONEDNN_LINEAR", value)
    assert cpu_ops._use_onednn_linear() is expected


def test_onednn_linear_bad_choice_names_the_variable(monkeypatch):
    from backends.torch import cpu_ops
    monkeypatch.setenv("TWINVQA_ONEDNN_LINEAR", "yes")
    with pytest.raises(ValueError, match="TWINVQA_ONEDNN_LINEAR"):
        cpu_ops._use_onednn_linear()


@pytest.mark.parametrize("dead_row", [False, True])
def test_torch_span_softmax_is_bit_identical_to_autograd(dead_row):
    """cpu_ops.span_softmax (one where pass, written-out backward) against masked_fill + softmax through autograd:
    probabilities and the scores' gradient equal bit for bit, rows whose every key is masked included."""
    from backends.torch import cpu_ops
    from backends.torch.layers import MASK_FILL, masked_fill
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 2, 5, 5, generator=gen, requires_grad=True)
    masks = torch.rand(3, 4, 5, 5, generator=gen) < 0.4
    masks[:, 0] = False
    if dead_row:
        masks[1, 2, 3] = True                                   # every key of one query masked in one order
    grad = torch.randn(3, 4, 2, 5, 5, generator=gen)
    assert cpu_ops.takes_span_softmax(scores)
    ours = cpu_ops.span_softmax(scores, masks.unsqueeze(2), MASK_FILL)
    ref = torch.nn.functional.softmax(masked_fill(scores.unsqueeze(1), masks.unsqueeze(2)), dim=-1)
    assert torch.equal(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, scores, grad)
    (g_ref,) = torch.autograd.grad(ref, scores, grad)
    assert torch.equal(g_ours, g_ref)
    with torch.no_grad():
        assert not cpu_ops.takes_span_softmax(scores)          # eval: the plain formula


def test_torch_vit_trar_span_softmax_takes_the_kernel_bit_identical_to_autograd():
    """ViT+TRAR's span_softmax, whose (L, T, T) masks are the same for every sample, takes cpu_ops.span_softmax when
    training on the CPU (masks broadcast over the batch): probabilities and gradient equal masked_fill + softmax
    through autograd bit for bit."""
    from backends.torch.layers import masked_fill
    from backends.torch.models import vit_trar
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(3, 2, 6, 6, generator=gen, requires_grad=True)
    masks = torch.rand(4, 6, 6, generator=gen) < 0.5
    masks[0] = False
    masks[..., 0] = False
    grad = torch.randn(3, 4, 2, 6, 6, generator=gen)
    ours = vit_trar.span_softmax(scores, masks)
    assert type(ours.grad_fn).__name__ == "_SpanSoftmaxBackward"
    ref = torch.nn.functional.softmax(masked_fill(scores.unsqueeze(1), masks.unsqueeze(1)), dim=-1)
    assert torch.equal(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, scores, grad)
    (g_ref,) = torch.autograd.grad(ref, scores, grad)
    assert torch.equal(g_ours, g_ref)


@pytest.mark.parametrize("tokens", [64, 14])
def test_paddle_mean_tokens_is_the_mean_and_its_gradient(tokens):
    """paddle cpu_ops.mean_tokens (a matmul with ones when training on the CPU) against numpy's float64 mean: the
    value within float32 rounding, the gradient exactly the upstream gradient / N on every token."""
    import numpy as np
    import paddle

    from backends.paddle import cpu_ops
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, tokens, 8)).astype(np.float32)
    upstream = rng.standard_normal((3, 8)).astype(np.float32)
    x = paddle.to_tensor(data, stop_gradient=False)
    assert cpu_ops._trains(x)
    out = cpu_ops.mean_tokens(x)
    assert out.shape == [3, 8]
    np.testing.assert_allclose(out.numpy(), data.astype(np.float64).mean(axis=1), rtol=1e-6, atol=1e-7)
    paddle.autograd.backward([out], [paddle.to_tensor(upstream)])
    expected = np.broadcast_to((upstream / np.float32(tokens))[:, None, :], data.shape)
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    with paddle.no_grad():                                     # eval: paddle's own mean
        np.testing.assert_allclose(cpu_ops.mean_tokens(x).numpy(), out.numpy(), rtol=1e-6, atol=1e-7)


def _span_softmax_float64(scores, masks, upstream):
    """masked_fill + softmax per order and its gradient summed over the orders, in float64 numpy."""
    import numpy as np
    x = np.where(masks[:, :, None], -1e9, scores.astype(np.float64)[:, None])      # (B, L, heads, N, N)
    e = np.exp(x - x.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    grad = probs * (upstream - (probs * upstream).sum(-1, keepdims=True))
    return probs, np.where(masks[:, :, None], 0.0, grad).sum(1)


@pytest.mark.parametrize("case", ["plain", "dead_row", "kept_far_below_masked"])
def test_paddle_span_softmax_against_float64(case):
    """paddle cpu_ops.span_softmax (one shared exp per row, or the filled softmax where a row is dead or its kept
    scores lie far below a masked one) against masked_fill + softmax in float64: probabilities and the scores'
    gradient within float32 rounding, the fallback taken exactly where it must be."""
    import numpy as np
    import paddle

    from backends.paddle import cpu_ops
    rng = np.random.default_rng(1)
    scores = (rng.standard_normal((3, 2, 6, 6)) * 4).astype(np.float32)
    masks = rng.random((3, 4, 6, 6)) < 0.4
    masks[:, 0] = False
    masks[..., 0] = False                                         # one key kept in every row unless made dead
    if case == "dead_row":
        masks[1, 2, 3] = True
    if case == "kept_far_below_masked":
        scores[2, 1, 4] = [-200.0, -199.0, -200.0, -200.0, -200.0, 0.0]   # key 5: the row's largest score
        masks[2, 3, 4] = [False, False, True, True, True, True]           # order 3 keeps keys 0 and 1 only: their
        # probabilities 1 / (1 + e) and e / (1 + e) need the fallback (shifted by 0, both exps underflow)
    upstream = rng.standard_normal((3, 4, 2, 6, 6)).astype(np.float32)
    ref_probs, ref_grad = _span_softmax_float64(scores, masks, upstream)   # a dead row: uniform, as masked_fill gives
    x = paddle.to_tensor(scores, stop_gradient=False)
    assert cpu_ops.takes_span_softmax(x)
    probs = cpu_ops.span_softmax(x, paddle.to_tensor(masks).unsqueeze(2), -1e9)
    np.testing.assert_allclose(probs.numpy(), ref_probs, rtol=2e-6, atol=1e-7)
    shared_exp = cpu_ops._span_softmax_one_exp(x.detach(), paddle.to_tensor(masks).unsqueeze(2))
    assert (shared_exp is None) == (case != "plain")           # a dead row sums to 0 as well
    if case == "plain":                 # the shared exp gives masked keys exactly 0 (Paddle's softmax: exp(-64) x)
        np.testing.assert_array_equal(shared_exp.numpy(), probs.numpy())
        assert not probs.numpy()[np.broadcast_to(masks[:, :, None], probs.shape)].any()
    paddle.autograd.backward([probs], [paddle.to_tensor(upstream)])
    np.testing.assert_allclose(x.grad.numpy(), ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 7, 16), (20, 48)])
def test_paddle_standard_layer_norm_against_float64(shape):
    """paddle cpu_ops.standard_layer_norm (ViT's nn.LayerNorm; paddle's forward, a written-out backward when training
    on the CPU): the output bit for bit paddle's own F.layer_norm, the gradients of x, weight and bias within float32
    rounding of float64 numpy, as close as paddle's own layer_norm_grad (no_grad: the next test)."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from backends.paddle import cpu_ops
    rng = np.random.default_rng(2)
    data = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    upstream = rng.standard_normal(shape).astype(np.float32)
    w_data = (1 + 0.1 * rng.standard_normal(shape[-1])).astype(np.float32)
    b_data = (0.1 * rng.standard_normal(shape[-1])).astype(np.float32)

    x64, g64, w64 = data.astype(np.float64), upstream.astype(np.float64), w_data.astype(np.float64)
    centered = x64 - x64.mean(-1, keepdims=True)
    r = 1 / np.sqrt((centered ** 2).mean(-1, keepdims=True) + 1e-6)
    xhat, gw = centered * r, g64 * w64
    expected = [r * (gw - gw.mean(-1, keepdims=True) - xhat * (gw * xhat).mean(-1, keepdims=True)),
                (g64 * xhat).reshape(-1, shape[-1]).sum(0), g64.reshape(-1, shape[-1]).sum(0)]

    def run(fn):
        x = paddle.to_tensor(data, stop_gradient=False)
        w = paddle.to_tensor(w_data, stop_gradient=False)
        b = paddle.to_tensor(b_data, stop_gradient=False)
        out = fn(x, w, b)
        paddle.autograd.backward([out], [paddle.to_tensor(upstream)])
        return out.numpy(), [t.grad.numpy() for t in (x, w, b)]

    def ours_checked(x, w, b):
        out = cpu_ops.standard_layer_norm(x, w, b, 1e-6)
        assert out.grad_fn.name() == "GradNodePyLayer__StandardNormBackward"     # the written-out backward
        return out

    ours, our_grads = run(ours_checked)
    plain, plain_grads = run(lambda x, w, b: F.layer_norm(x, shape[-1:], w, b, 1e-6))
    np.testing.assert_array_equal(ours, plain)
    for mine, theirs, exact in zip(our_grads, plain_grads, expected):
        scale = np.abs(exact).max()
        assert np.abs(mine - exact).max() / scale < 2e-6
        assert np.abs(mine - exact).max() <= 4 * max(np.abs(theirs - exact).max(), 1e-7 * scale)


def test_paddle_standard_layer_norm_without_grad_is_paddles_op(monkeypatch):
    """Under no_grad (evaluation) standard_layer_norm is F.layer_norm itself, never the PyLayer."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from backends.paddle import cpu_ops

    def refuse(*args):
        raise AssertionError("the PyLayer ran under no_grad")

    monkeypatch.setattr(cpu_ops._StandardNormBackward, "apply", refuse)
    x = paddle.to_tensor(np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32), stop_gradient=False)
    w, b = paddle.full([6], 1.5), paddle.full([6], 0.25)
    w.stop_gradient = b.stop_gradient = False
    with paddle.no_grad():
        out = cpu_ops.standard_layer_norm(x, w, b, 1e-6)
    np.testing.assert_array_equal(out.numpy(), F.layer_norm(x, [6], w, b, 1e-6).numpy())


@pytest.mark.parametrize("frozen", ["weight", "bias", "input"])
@pytest.mark.parametrize("op", ["linear", "layer_norm", "standard_layer_norm"])
def test_paddle_kernels_with_a_frozen_operand(op, frozen):
    """A PyLayer must return no gradient for an input with stop_gradient (Paddle refuses one): the CPU kernels train a
    layer whose weight, bias or input is frozen, with the gradients of the others equal to those of the plain formula
    through autograd within float32 rounding, and leave the frozen one without a gradient."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from backends.paddle import cpu_ops
    rng = np.random.default_rng(6)
    data = rng.standard_normal((3, 5, 8)).astype(np.float32)
    upstream = rng.standard_normal((3, 5, 8)).astype(np.float32)
    w_data = rng.standard_normal((8, 8) if op == "linear" else (8,)).astype(np.float32)
    b_data = rng.standard_normal(8).astype(np.float32)
    plain = {"linear": lambda x, w, b: F.linear(x, w, b),
             "layer_norm": lambda x, w, b: w * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6) + b,
             # the formula, not F.layer_norm: paddle 3.3.1's CPU layer_norm_grad drops the weight from the input's
             # gradient when the weight has stop_gradient (4.7 off float64 here); the kernel gets it right
             "standard_layer_norm": lambda x, w, b: ((x - x.mean(-1, keepdim=True))
                                                    / paddle.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6) * w
                                                    + b)}[op]
    kernel = {"linear": cpu_ops.linear,
              "layer_norm": lambda x, w, b: cpu_ops.layer_norm(x, w, b, 1e-6),
              "standard_layer_norm": lambda x, w, b: cpu_ops.standard_layer_norm(x, w, b, 1e-6)}[op]

    def grads(fn):
        tensors = dict(input=paddle.to_tensor(data), weight=paddle.to_tensor(w_data), bias=paddle.to_tensor(b_data))
        for name, t in tensors.items():
            t.stop_gradient = name == frozen
        out = fn(tensors["input"], tensors["weight"], tensors["bias"])
        paddle.autograd.backward([out], [paddle.to_tensor(upstream)])
        return {name: None if t.grad is None else t.grad.numpy() for name, t in tensors.items()}

    ours, expected = grads(kernel), grads(plain)
    assert ours[frozen] is None
    for name in ("input", "weight", "bias"):
        if name != frozen:
            np.testing.assert_allclose(ours[name], expected[name], rtol=1e-4, atol=1e-5)


def test_paddle_softmax_backward_against_float64():
    """paddle cpu_ops.softmax_backward (the span softmax's backward, row sums as matmuls) against float64 numpy:
    (g - row_sum(g * p)) * p within float32 rounding."""
    import numpy as np
    import paddle

    from backends.paddle import cpu_ops
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, 2, 5, 7)) * 3
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    upstream = rng.standard_normal(probs.shape)
    p32, g32 = probs.astype(np.float32), upstream.astype(np.float32)
    expected = (g32 - (p32.astype(np.float64) * g32).sum(-1, keepdims=True)) * p32
    ours = cpu_ops.softmax_backward(paddle.to_tensor(p32), paddle.to_tensor(g32)).numpy()
    assert ours.shape == probs.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
