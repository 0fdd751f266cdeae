"""x2paddle (1.6.0 checked) cannot trace the operations the original TRAR / MCAN / MMNasNet code uses: aten::std (the
openvqa LayerNorm's unbiased std), and in TRAR aten::logical_or and aten::einsum. Each is traced alone here, in a
module written for this test in the originals' manner, and x2paddle must refuse it naming the operation."""
import pytest

torch = pytest.importorskip("torch")
convert = pytest.importorskip("x2paddle.convert")


class OpenvqaLayerNorm(torch.nn.Module):
    """LayerNorm as openvqa's ops/layer_norm.py computes it: a_2 * (x - mean) / (std + eps) + b_2, unbiased std."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.a_2 = torch.nn.Parameter(torch.ones(size))
        self.b_2 = torch.nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x):
        return self.a_2 * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + self.eps) + self.b_2


class SpanMaskUnion(torch.nn.Module):
    """Two masks joined with logical_or, then filled (TRAR's routing masks)."""

    def forward(self, x):
        return x.masked_fill(torch.logical_or(x > 0, x < -1), -1e9)


class RoutedMaps(torch.nn.Module):
    """Attention maps mixed with einsum (TRAR's soft routing)."""

    def forward(self, x):
        return torch.einsum("bij,bkj->bik", x, x)


@pytest.mark.parametrize("module, op", [(OpenvqaLayerNorm(8), "aten::std"), (SpanMaskUnion(), "aten::logical_or"),
                                        (RoutedMaps(), "aten::einsum")])
def test_x2paddle_refuses_the_originals_operations(module, op, tmp_path, capfd):
    with pytest.raises(Exception, match="not supported"):
        convert.pytorch2paddle(module.eval(), save_dir=str(tmp_path), jit_type="trace",
                               input_examples=[torch.randn(2, 3, 8)])
    assert op in capfd.readouterr().out
