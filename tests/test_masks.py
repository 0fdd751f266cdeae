"""TRAR span masks (core.masks) against hand-drawn grids."""
import numpy as np
import pytest

from core.masks import span_mask, span_mask_stack, span_masks


def grid(text):
    """'1' = masked; rows of the N x N matrix separated by spaces."""
    return np.array([[c == "1" for c in row] for row in text.split()], dtype=bool)


def test_order_zero_is_padding_only():
    assert span_mask(3, 0) is None


def test_2x2_order_1_allows_everything():
    # On a 2x2 grid every cell is within Chebyshev distance 1 of every other cell.
    np.testing.assert_array_equal(span_mask(2, 1), np.zeros((4, 4), bool))


def test_3x3_order_1():
    # cells 0 1 2 / 3 4 5 / 6 7 8; the centre (4) sees all, corners see their 2x2 block.
    expected = grid("""
        001001111
        000000111
        100100111
        001001001
        000000000
        100100100
        111001001
        111000000
        111100100
    """)
    np.testing.assert_array_equal(span_mask(3, 1), expected)


def test_4x4_order_1_and_2_rows():
    m1 = span_mask(4, 1)
    m2 = span_mask(4, 2)
    assert m1.shape == (16, 16) and m1.dtype == bool
    # query (0,0) = cell 0: order 1 allows (0,0),(0,1),(1,0),(1,1) = cells 0,1,4,5
    assert sorted(np.flatnonzero(~m1[0])) == [0, 1, 4, 5]
    # query (1,2) = cell 6: order 1 allows rows 0..2 x cols 1..3
    assert sorted(np.flatnonzero(~m1[6])) == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    # query (0,0), order 2: rows 0..2 x cols 0..2
    assert sorted(np.flatnonzero(~m2[0])) == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    # query (3,3) = cell 15, order 2: rows 1..3 x cols 1..3
    assert sorted(np.flatnonzero(~m2[15])) == [5, 6, 7, 9, 10, 11, 13, 14, 15]
    # query (1,1) = cell 5, order 2: rows 0..3 x cols 0..3, the whole grid
    assert not m2[5].any()


def test_masks_are_symmetric_and_keep_the_diagonal():
    for scale, order in [(3, 1), (5, 2), (8, 3)]:
        m = span_mask(scale, order)
        np.testing.assert_array_equal(m, m.T)
        assert not np.diag(m).any()


def test_allowed_count_per_query_on_8x8():
    # interior query (3,3) with order 2 sees a full 5x5 window; corner (0,0) sees 3x3
    m = span_mask(8, 2)
    assert (~m[3 * 8 + 3]).sum() == 25
    assert (~m[0]).sum() == 9


def test_span_masks_list_and_stack():
    masks = span_masks(3, [0, 1])
    assert masks[0] is None
    np.testing.assert_array_equal(masks[1], span_mask(3, 1))
    stack = span_mask_stack(3, [0, 1])
    assert stack.shape == (2, 9, 9) and stack.dtype == bool
    assert not stack[0].any()
    np.testing.assert_array_equal(stack[1], span_mask(3, 1))


@pytest.mark.parametrize("scale, order", [(3, 3), (4, 7), (1, 1)])
def test_order_must_be_below_scale(scale, order):
    with pytest.raises(ValueError, match="smaller than IMG_SCALE"):
        span_mask(scale, order)


@pytest.mark.parametrize("scale, order", [(0, 0), (3, -1), (3, 1.5), (True, 0)])
def test_bad_values(scale, order):
    with pytest.raises(ValueError):
        span_mask(scale, order)


def test_empty_orders():
    with pytest.raises(ValueError, match="ORDERS"):
        span_mask_stack(4, [])
