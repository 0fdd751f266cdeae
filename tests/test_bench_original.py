"""bench/original.py and the --original option, on a tiny stand-in tree of the original's layout (written here; the
real TRAR-VQA code is never read by these tests) and fake clocks. No timing is asserted."""
import json
import sys

import pytest

from bench import original, report, warm_up
from bench.__main__ import build_parser
from bench.__main__ import main as bench_main

# The stand-in: the module paths and class names bench/original.py uses, with the two spots its in-memory changes
# touch (np.bool, .cuda() in getMasks): without those changes it fails on a CPU with numpy 2.
STAND_IN = {
    "openvqa/models/TRAR/model_cfgs.py": (
        "class Cfgs:\n"
        "    def __init__(self):\n"
        "        self.HIDDEN_SIZE = 7\n"),
    "openvqa/models/TRAR/trar.py": (
        "import numpy as np\n"
        "import torch\n\n\n"
        "def getImgMasks(n):\n"
        "    return np.asarray(np.eye(n) == 0, dtype=np.bool)\n\n\n"
        "def getMasks(x_mask, __C):\n"
        "    mask = torch.from_numpy(getImgMasks(x_mask.shape[1])).byte().cuda()\n"
        "    return torch.logical_or(x_mask, mask)\n\n\n"
        "def elsewhere(t):\n"
        "    return t.cuda()\n"),
    "openvqa/models/TRAR/net.py": (
        "import torch\n"
        "import torch.nn as nn\n"
        "from openvqa.models.TRAR.trar import getMasks\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, __C, pretrained_emb, token_size, answer_size):\n"
        "        super().__init__()\n"
        "        self.cfg = __C\n"
        "        self.embedding = nn.Embedding(token_size, 4)\n"
        "        self.proj = nn.Linear(4 + __C.FEAT_SIZE['vqa']['FRCN_FEAT_SIZE'][1], answer_size)\n\n"
        "    def forward(self, frcn_feat, grid_feat, bbox_feat, ques_ix):\n"
        "        masks = getMasks((frcn_feat.abs().sum(-1) == 0).unsqueeze(-1), self.cfg)\n"
        "        img = frcn_feat.mean(1) * (~masks).float().mean()\n"
        "        return self.proj(torch.cat([img, self.embedding(ques_ix).mean(1)], -1))\n"),
}


@pytest.fixture
def stand_in(tmp_path):
    root = tmp_path / "TRAR-VQA"
    for rel, text in STAND_IN.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_patch_source_changes_only_np_bool_and_cuda_in_getmasks():
    source, applied = original.patch_source("openvqa.models.TRAR.trar", STAND_IN["openvqa/models/TRAR/trar.py"])
    assert "dtype=bool)" in source and "np.bool" not in source
    assert ".byte().to(x_mask.device)" in source
    assert "return t.cuda()" in source                                  # outside getMasks: untouched
    assert applied == {"np.bool -> bool": 1, ".cuda() -> .to(input device) in getMasks": 1}
    other, applied = original.patch_source("openvqa.x", "a = np.bool_(1)\nb = np.bool\ny.cuda()\n")
    assert other == "a = np.bool_(1)\nb = bool\ny.cuda()\n" and applied == {"np.bool -> bool": 1}


def test_measure_times_the_stand_in_without_touching_it(stand_in):
    before = _tree(stand_in)
    result = original.measure({"path": str(stand_in), "size": "demo", "steps": 2, "warmup": 1})
    assert result["backend"] == "original" and result["model"] == "trar" and len(result["times_s"]) == 2
    assert result["batch_size"] == 32 and result["warmup"] == 1 and result["loss"] > 0
    assert result["original"]["changes_in_memory"] == {"np.bool -> bool": 1,
                                                       ".cuda() -> .to(input device) in getMasks": 1}
    assert _tree(stand_in) == before                                   # nothing written, nothing changed
    assert not any(name == "openvqa" or name.startswith("openvqa.") for name in sys.modules)


def test_measure_rejects_a_folder_that_is_not_a_checkout(tmp_path):
    with pytest.raises(ValueError, match="openvqa/models/TRAR"):
        original.measure({"path": str(tmp_path), "size": "demo", "steps": 1, "warmup": 0})


def test_warm_up_runs_until_the_last_steps_agree():
    durations = iter([10.3, 10.5, 7.8, 6.4, 6.8, 5.8, 6.1, 6.0, 5.9])
    now = [0.0]

    def clock():
        return now[0]

    def step():
        now[0] += next(durations)
    times, settled = warm_up.run_until_stable(step, window=3, tolerance=0.10, cap=12, clock=clock)
    assert times == pytest.approx([10.3, 10.5, 7.8, 6.4, 6.8, 5.8, 6.1, 6.0]) and settled   # 6.1 / 5.8 <= 1.1
    durations = iter([1.0, 2.0] * 10)
    now[0] = 0.0
    times, settled = warm_up.run_until_stable(step, window=3, tolerance=0.10, cap=5, clock=clock)
    assert len(times) == 5 and not settled


def test_original_option_adds_the_original_to_trar_rounds_with_the_stable_warm_up(monkeypatch, stand_in):
    import bench.__main__ as bench_cli
    calls = []

    def fake_child(module, spec, threads, timeout, max_others=0.5):
        calls.append((module, spec["backend"], spec["model"], spec["warmup"], spec.get("path")))
        floor_here = {"best_gflops_per_s": 100.0 + len(calls), "matmul_s": 0.5} if spec["floor_here"] else {}
        return {**spec, "batch_size": 64, "times_s": [1.0], "median_s": 1.0, "steps": 1, "peak_rss_mib": 1.0,
                **floor_here}

    monkeypatch.setattr(bench_cli, "run_child", fake_child)
    monkeypatch.setattr(bench_cli, "running_now", lambda seconds=3.0: 0.0)
    args = build_parser().parse_args(["train", "--models", "trar,mcan", "--sizes", "default", "--default-rounds", "2",
                                      "--original", str(stand_in)])
    runs = bench_cli.model_runs(args, ["train"], {"quiet": True})
    trar = [c for c in calls if c[2] == "trar"]
    # every default train measurement asks for the floor's rate in its own process; each round's is kept
    torch_trar = next(r for r in runs if r["backend"] == "torch" and r["model"] == "trar")
    assert torch_trar["round_best_gflops_per_s"] == [101.0, 106.0] and torch_trar["round_matmul_s"] == [0.5, 0.5]
    assert [c[1] for c in trar] == ["torch", "paddle", "original", "original", "paddle", "torch"]
    assert all(c[3] == "stable" for c in calls)                         # the same warm-up rule for every run
    assert {c[0] for c in trar if c[1] == "original"} == {"bench.original"}
    assert {c[4] for c in trar if c[1] == "original"} == {str(stand_in)}
    assert "original" not in [c[1] for c in calls if c[2] == "mcan"]


def test_original_option_rejects_a_path_without_the_trar_model(tmp_path):
    with pytest.raises(SystemExit, match="openvqa/models/TRAR"):
        bench_main(["train", "--models", "trar", "--original", str(tmp_path), "--out", str(tmp_path / "r.json")])


def _run(backend, median, size="default"):
    return {"kind": "train", "backend": backend, "model": "trar", "size": size, "device": "cpu", "batch_size": 64,
            "median_s": median, "steps": 5, "peak_rss_mib": 1.0, "framework": {"threads": 2},
            "warmup_rule": "stable"}


def test_report_prints_the_three_steps_and_the_ratios_from_the_same_run():
    merged = {"runs": [_run("torch", 4.0), _run("paddle", 4.2), _run("original", 6.0)],
              "floor": {"best_gflops_per_s": 220.0, "threads": 2,
                        "floors": {"trar/default": {"floor_s": 3.2, "gflop": 700.0}}}}
    text = "\n".join(report.original_lines(merged))
    assert "original 6 s, torch 4 s, paddle 4.2 s" in text
    assert "torch / original: **0.67x** (goal <= 0.75x: met)" in text           # 4.0 / 6.0
    assert "paddle / torch: **1.05x** (goal <= 1.1x: met)" in text              # 4.2 / 4.0
    assert "torch / floor: **1.25x** (floor 3.2 s; goal <= 1.3x: met)" in text   # 4.0 / 3.2
    assert "0.67x the original's 6 s (goal <= 0.75x: met); measured in the same run" in report.goal_lines(merged)


def test_torch_to_original_is_the_median_of_the_per_round_ratios():
    """Measured in rounds, torch / original is the median of each round's ratio (as paddle / torch), with its
    spread; not the ratio of the two pooled medians (5.5 / 8.25 = 0.67 here)."""
    merged = {"runs": [{**_run("torch", 5.5), "round_times_s": [5.0, 6.0, 5.5]},
                       {**_run("paddle", 6.0), "round_times_s": [5.5, 6.6, 6.0]},
                       {**_run("original", 8.25), "round_times_s": [8.0, 6.5, 9.0]}]}
    text = "\n".join(report.original_lines(merged))
    # rounds 5.0 / 8.0 = 0.625, 6.0 / 6.5 = 0.923, 5.5 / 9.0 = 0.611
    assert "torch / original: **0.62x** (0.61 to 0.92 over 3 rounds) (goal <= 0.75x: met)" in text
    assert "paddle / torch: **1.10x** (1.09 to 1.10 over 3 rounds) (goal <= 1.1x: met)" in text
    assert "= 0.62x the original's 8.25 s (goal <= 0.75x: met); measured in the same run" in report.goal_lines(merged)


def test_floor_per_round_uses_the_rate_measured_in_each_torch_process():
    """With the matmul rate and the own products' seconds measured in each torch process after its steps
    (bench.train_step.floor_here), torch / floor is per round: step_r / (GFLOP / rate_r), the median and spread
    printed, not one floor from the floor process minutes later."""
    torch_run = {**_run("torch", 5.5), "round_times_s": [5.0, 6.0, 5.5],
                 "round_best_gflops_per_s": [140.0, 120.0, 130.0], "round_matmul_s": [4.0, 4.6, 4.4]}
    merged = {"runs": [torch_run, _run("paddle", 6.0), _run("original", 8.0)],
              "floor": {"best_gflops_per_s": 300.0, "threads": 2,
                        "floors": {"trar/default": {"floor_s": 2.33, "gflop": 700.0, "matmul_s": 2.0}}}}
    text = "\n".join(report.original_lines(merged))
    # floors 700/140 = 5.0, 700/120 = 5.83, 700/130 = 5.38 s -> ratios 1.00, 1.03, 1.02; own 0.80, 0.79, 0.82;
    # rest 1.0, 1.4, 1.1 s. The floor process's 2.33 s floor (2.36x) is not used.
    assert ("torch / floor: **1.02x** (goal <= 1.3x: met); per round 1.02x (1.00 to 1.03 over 3 rounds): the "
            "floor is 700 GFLOP of matmuls at the best float32 matmul rate the torch process reached right after its "
            "steps, 130 GFLOP/s (120 to 140 over 3 rounds); the step's own matmuls, timed one by one in the same "
            "process: 0.80x (0.79 to 0.82 over 3 rounds) the floor, leaving 1.10 s (1.00 to 1.40 over 3 rounds) "
            "of the step to everything else") in text
    assert "2.36x" not in text
    goals = report.goal_lines(merged)
    assert "- torch train step, trar default: 5.5 s; torch / floor: **1.02x**" in goals


def test_the_anchor_is_the_newest_run_by_its_date_not_its_file_name(tmp_path):
    for name, date, step in (("2026-01-02-night.json", "2026-01-02T18:39:00", 9.0),
                             ("2026-01-02-final.json", "2026-01-02T18:57:00", 7.0)):   # 'night' sorts last by name
        (tmp_path / name).write_text(json.dumps({"meta": {"date": date}, "runs": [_run("original", step)]}))
    run, path, date = report.original_anchor(str(tmp_path))
    assert path.endswith("2026-01-02-final.json") and date == "2026-01-02T18:57:00" and run["median_s"] == 7.0


def test_without_the_original_the_goal_names_its_anchor_file(tmp_path):
    (tmp_path / "2026-01-01-a.json").write_text(json.dumps({"meta": {"date": "2026-01-01"},
                                                            "runs": [_run("original", 8.0)]}))
    (tmp_path / "2026-01-02-b.json").write_text(json.dumps({"meta": {"date": "2026-01-02"},
                                                            "runs": [_run("torch", 1.0)]}))   # no original run
    goals = report.goal_lines({"runs": [_run("torch", 4.0)]}, anchor_dir=str(tmp_path))
    assert "0.50x the original's 8 s (goal <= 0.75x: no verdict, the original was measured 2026-01-01 in another " \
        "run" in goals
    assert "met" not in goals   # no verdict against another run's original: a host's speed varies between runs
    assert "2026-01-01-a.json" in goals
