import pytest

from core.schedules import decayed_lr_base, tau_at, warmup_lr

LR = 1e-4


@pytest.mark.parametrize("step, expected", [
    # VQA train: 443757 / 64 = 6933.703125 steps per epoch; thresholds int(E*4*0.25)=6933, int(E*2)=13867,
    # int(E*3)=20801
    (1, LR / 4), (6933, LR / 4), (6934, LR / 2), (13867, LR / 2), (13868, 3 * LR / 4), (20801, 3 * LR / 4),
    (20802, LR), (90000, LR),
])
def test_warmup_vqa_thresholds(step, expected):
    assert warmup_lr(step, LR, 443757, 64, 3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step, expected", [
    # 1000 / 64 = 15.625 steps per epoch: thresholds 15, 31 (31.25), 46 (46.875)
    (15, LR / 4), (16, LR / 2), (31, LR / 2), (32, 3 * LR / 4), (46, 3 * LR / 4), (47, LR),
])
def test_warmup_truncates_float_thresholds(step, expected):
    assert warmup_lr(step, LR, 1000, 64, 3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step, expected", [
    # W=1, E=10: thresholds int(10*2*0.25)=5, 10, 15 with rates 1/2, 2/2 and 3/2 of lr_base (the original's quirk)
    (5, LR / 2), (6, LR), (10, LR), (11, 1.5 * LR), (15, 1.5 * LR), (16, LR),
])
def test_warmup_with_one_warmup_epoch(step, expected):
    assert warmup_lr(step, LR, 100, 10, 1) == pytest.approx(expected, rel=1e-12)


def test_decay_applied_cumulatively_from_listed_epochs():
    got = [decayed_lr_base(LR, e, [10, 12], 0.2) for e in range(13)]
    assert got[:10] == [LR] * 10
    assert got[10] == got[11] == LR * 0.2
    assert got[12] == LR * 0.2 * 0.2
    assert decayed_lr_base(LR, 12, [12, 10, 12], 0.2) == got[12]
    assert decayed_lr_base(4e-5, 16, [13, 15], 0.2) == pytest.approx(1.6e-6)


def test_tau_fast_policy():
    expected = [10, 7, 4, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    got = [tau_at(e, 1, 10, 0.1, 13, 3) for e in range(13)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_tau_slow_policy():
    vqa = [tau_at(e, 0, 10, 0.1, 13, 3) for e in range(13)]
    assert vqa[:3] == pytest.approx([10, 9.175, 8.35])
    assert vqa[11:] == pytest.approx([0.925, 0.1])
    clevr = [tau_at(e, 0, 10, 0.1, 16, 3) for e in range(16)]
    assert clevr[:3] == pytest.approx([10, 9.34, 8.68])
    assert clevr[14:] == pytest.approx([0.76, 0.1])
    assert tau_at(0, 0, 10, 0.1, 1, 0) == 10


def test_tau_finetune_policy():
    got = [tau_at(e, 2, 10, 0.1, 13, 3) for e in range(6)]
    assert got == pytest.approx([4.25, 4.0, 3.75, 0.1, 0.1, 0.1])


def test_tau_unknown_policy():
    with pytest.raises(ValueError, match="TAU_POLICY"):
        tau_at(0, 3, 10, 0.1, 13, 3)
