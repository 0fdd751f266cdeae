"""The parameter counts README.md states, counted on nets built in each backend (not from the code's shape lists):
RWSAN's default 13,368,539 + 300 x token_size, summed by hand here from the layer shapes of reference rwsan.md §1-§4,
and ViT-B/16's at 224 in paddle (86,567,656; with TRAR [0, 1, 2, 3], 90,125,080; reference vit_trar.md)."""
import numpy as np
import pytest

from core.config import load_config
from tests.model_configs import models_module


def _linear(n_in, n_out):
    return n_in * n_out + n_out


def rwsan_default_count(token_size):
    """Reference rwsan.md §1: H 512, h 4 heads, F 4H, midsizes r_s 4, r_a 16, r_g 64, FLAT_MLP 256, FLAT_OUT 1024,
    image features 2048, word embedding 300, 3129 answers; §2-§4 the layers."""
    H, h, F, E, img, mlp, out, answers = 512, 4, 2048, 300, 2048, 256, 1024, 3129
    norm = 2 * H                                                     # a_2, b_2

    def rwsa(r):                                                     # v and merge full width, q and k h x r wide
        return 2 * _linear(H, H) + 2 * _linear(H, h * r)

    ffn = _linear(H, F) + _linear(F, H)
    sa = rwsa(4) + ffn + 2 * norm                                    # srwsa.denceenc1
    sga = rwsa(16) + rwsa(64) + ffn + 3 * norm                       # sgrwsa.dec1
    lstm = 4 * H * (E + H) + 2 * 4 * H                               # one layer, two bias vectors
    attflat = _linear(H, mlp) + _linear(mlp, 1) + _linear(H, out)
    assert (sa, sga, lstm, attflat) == (2_643_488, 3_481_728, 1_667_072, 656_897)   # the reference's table, §5
    return (E * token_size + lstm + _linear(img, H) + sa + 2 * norm + sga + 2 * norm + 2 * attflat + 2 * out
            + _linear(out, answers))


def _count(net):
    return sum(int(np.prod(p.shape)) for p in net.parameters())


@pytest.mark.parametrize("token_size", [36, 20_573])
def test_rwsan_default_count_built_in_each_backend(backend, token_size):
    cfg = load_config("rwsan", "vqa", overrides={"USE_GLOVE": False})
    net = backend.build_model(cfg, token_size=token_size, answer_size=3129)
    assert _count(net) == rwsan_default_count(token_size) == 13_368_539 + 300 * token_size
    assert len(net.state_dict()) == 73                               # reference §5: no buffers, 73 keys


def test_vit_trar_b16_224_count_in_paddle():
    """tests/test_vit.py counts both ViT-B/16 nets at 224 in torch (meta device); this builds ViT+TRAR in paddle, under
    paddle.LazyGuard (shapes, no weights: the ViTs have no LSTM, which it cannot build): 86,567,656 of plain
    ViT-B/16, plus each block's routing MLP."""
    paddle = pytest.importorskip("paddle")
    cfg = load_config("vit_trar", "imagenet", overrides={"IMG_SIZE": 224, "ORDERS": [0, 1, 2, 3]})
    with paddle.LazyGuard():
        net = models_module("paddle").build_net(cfg, num_classes=1000)
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == _count(net) == 90_125_080
    routing = sum(int(np.prod(shape)) for key, shape in shapes.items() if ".routing_block." in key)
    assert 86_567_656 + routing == 90_125_080
