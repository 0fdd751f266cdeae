"""core.geometry against boxes worked by hand."""
import math

import numpy as np
import pytest

from core.geometry import relation_geometry, relation_geometry_batch

# A = (0, 0, 9, 19):   cx 4.5,  cy 9.5, w 10, h 20
# B = (10, 0, 29, 9):  cx 19.5, cy 4.5, w 20, h 10
# P = (0, 0, 0, 0) padding: cx 0, cy 0, w 1, h 1
BOXES = np.array([[0, 0, 9, 19], [10, 0, 29, 9], [0, 0, 0, 0]], dtype=np.float32)
L = math.log
LMIN = math.log(1e-3)
# EXPECTED[i][j] = (g0, g1, g2, g3), i = query box, j = key box; divisions use the query's w_i / h_i.
EXPECTED = [
    [  # query A
        (LMIN, LMIN, 0.0, 0.0),                              # A-A: zero offsets clamp to 1e-3
        (L(15 / 10), L(5 / 20), L(10 / 20), L(20 / 10)),     # A-B: |4.5-19.5|/10, |9.5-4.5|/20
        (L(4.5 / 10), L(9.5 / 20), L(10 / 1), L(20 / 1)),    # A-P
    ],
    [  # query B
        (L(15 / 20), L(5 / 10), L(20 / 10), L(10 / 20)),     # B-A: |19.5-4.5|/20, |4.5-9.5|/10
        (LMIN, LMIN, 0.0, 0.0),                              # B-B
        (L(19.5 / 20), L(4.5 / 10), L(20 / 1), L(10 / 1)),   # B-P
    ],
    [  # query P (padded row: w = h = 1, finite everywhere)
        (L(4.5 / 1), L(9.5 / 1), L(1 / 10), L(1 / 20)),      # P-A
        (L(19.5 / 1), L(4.5 / 1), L(1 / 20), L(1 / 10)),     # P-B
        (LMIN, LMIN, 0.0, 0.0),                              # P-P
    ],
]


def test_hand_worked_boxes():
    got = relation_geometry(BOXES)
    assert got.shape == (3, 3, 4)
    assert got.dtype == np.float32
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np.array(EXPECTED, dtype=np.float64), rtol=0, atol=1e-6)


def test_small_offset_is_clamped_not_just_on_the_diagonal():
    # C = (0, 0, 999, 999): cx 499.5, w 1000; D = (0.5, 0, 999.5, 999): cx 500, w 1000.
    # |499.5 - 500| / 1000 = 5e-4 < 1e-3 -> log(1e-3); cy equal -> log(1e-3); w and h equal -> 0.
    boxes = np.array([[0, 0, 999, 999], [0.5, 0, 999.5, 999]], dtype=np.float32)
    got = relation_geometry(boxes)
    np.testing.assert_allclose(got[0, 1], [LMIN, LMIN, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(got[1, 0], [LMIN, LMIN, 0.0, 0.0], atol=1e-6)


def test_batch_matches_per_image():
    other = np.array([[5, 5, 14, 24], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    batch = relation_geometry_batch(np.stack([BOXES, other]))
    assert batch.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(batch[0], np.array(EXPECTED), atol=1e-6)
    # other[0] = (5, 5, 14, 24): cx 9.5, cy 14.5, w 10, h 20; against a padded box (cx 0, cy 0, w 1, h 1)
    np.testing.assert_allclose(batch[1, 0, 1], [L(9.5 / 10), L(14.5 / 20), L(10), L(20)], atol=1e-6)
    np.testing.assert_allclose(batch[1, 1, 0], [L(9.5), L(14.5), L(1 / 10), L(1 / 20)], atol=1e-6)


@pytest.mark.parametrize("fn, shape", [
    (relation_geometry, (3, 5)),
    (relation_geometry, (2, 3, 4)),
    (relation_geometry_batch, (3, 4)),
])
def test_bad_shape_is_a_clear_error(fn, shape):
    with pytest.raises(ValueError, match=r"expected pixel boxes of shape"):
        fn(np.zeros(shape, dtype=np.float32))
