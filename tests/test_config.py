import os
import pickle
import re

import pytest

from core import config as config_module
from core.config import DATASETS, MODELS, ConfigError, load_config


def _error(overrides=None, model="trar", dataset="vqa", run_mode="train"):
    with pytest.raises(ConfigError) as info:
        load_config(model, dataset, overrides, run_mode=run_mode)
    message = str(info.value)
    assert "\n" not in message
    return message


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---- errors, one per check; each message names its key ----

def test_unknown_key_suggests_the_closest_name():
    message = _error({"HIDDEN_SIZ": 256})
    assert message.startswith("HIDDEN_SIZ:") and "did you mean HIDDEN_SIZE?" in message


@pytest.mark.parametrize("key, value", [
    ("BATCH_SIZE", "64"), ("LAYER", True), ("LAYER", 2.5), ("USE_GLOVE", "yes"), ("USE_GLOVE", 1),
    ("LR_BASE", "fast"), ("LR_BASE", True), ("ORDERS", [0, "1"]), ("ORDERS", 3), ("ROUTING", 1),
    ("SUBSET", "10"), ("SUBSET_IIDS", 5),
])
def test_wrong_type(key, value):
    assert _error({key: value}).startswith(f"{key}: expected")


@pytest.mark.parametrize("key, value", [("LR_BASE", float("nan")), ("LR_BASE", "nan"), ("LR_BASE", float("inf")),
                                        ("LR_DECAY_R", "-inf"), ("DROPOUT_R", float("nan")), ("TAU_MAX", "1e999")])
def test_float_keys_must_be_finite(key, value):
    """NaN passes every bound check (nan < 0 is False): LR_BASE=.nan trained on NaN weights."""
    message = _error({key: value})
    assert message.startswith(f"{key}:") and "finite" in message


def test_lr_base_nan_from_the_command_line_is_refused():
    from core.cli import config_from_argv
    with pytest.raises(ConfigError, match="LR_BASE: must be a finite number"):
        config_from_argv(["--RUN=train", "--MODEL=trar", "--DATASET=demo", "--SET", "LR_BASE=.nan"])


def test_opt_params_must_be_finite():
    message = _error({"OPT_PARAMS": {"betas": "(0.9, 0.98)", "eps": "1e999"}})
    assert message.startswith("OPT_PARAMS.eps:") and "finite" in message


def test_number_strings_become_floats():
    cfg = load_config("trar", "vqa", {"LR_BASE": "2e-5", "TAU_MAX": 5})
    assert cfg.LR_BASE == 2e-5 and isinstance(cfg.TAU_MAX, float)


def test_batch_size_must_divide_by_accumulation():
    assert "BATCH_SIZE" in _error({"BATCH_SIZE": 64, "GRAD_ACCU_STEPS": 3})


@pytest.mark.parametrize("orders", [[0, 8], [-1, 0], [0, 0], []])
def test_orders_out_of_range_or_repeated(orders):
    assert _error({"ORDERS": orders}).startswith("ORDERS")


def test_img_scale_must_match_grid_rows():
    message = _error({"IMG_SCALE": 16})
    assert message.startswith("IMG_SCALE") and "FEAT_SIZE" in message and "256" in message
    cfg = load_config("trar", "vqa", {"IMG_SCALE": 16, "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": [256, 2048]}}})
    assert cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"] == (256, 2048)


def test_img_scale_checked_against_clevr_grid():
    assert _error({"IMG_SCALE": 8, "ORDERS": [0, 1]}, dataset="clevr").startswith("IMG_SCALE")


def test_trar_keys_do_not_bind_mcan():
    cfg = load_config("mcan_small", "vqa", {"IMG_SCALE": 3, "ORDERS": [0, 5]})
    assert cfg.IMG_SCALE == 3


@pytest.mark.parametrize("dataset, loss", [("vqa", "ce"), ("demo", "ce"), ("clevr", "bce"), ("vqa", "mse")])
def test_loss_must_suit_dataset(dataset, loss):
    assert _error({"LOSS_FUNC": loss}, dataset=dataset).startswith("LOSS_FUNC")


def test_kld_allowed_for_vqa():
    assert load_config("trar", "vqa", {"LOSS_FUNC": "kld"}).LOSS_FUNC == "kld"


@pytest.mark.parametrize("key, value", [
    ("LOSS_REDUCTION", "none"), ("ROUTING", "medium"), ("POOLING", "max"), ("TAU_POLICY", 3),
    ("FEAT_TYPE", "patch"), ("BACKEND", "jax"), ("OPT", "RMSprop"),
])
def test_value_not_in_its_set(key, value):
    message = _error({key: value})
    assert message.startswith(key) and repr(value) in message


def test_run_mode_must_be_known():
    assert _error(run_mode="predict").startswith("RUN_MODE")


@pytest.mark.parametrize("dataset, split", [("clevr", "train+vg"), ("demo", "train+vg"), ("vqa", "train+test"),
                                            ("vqa", "train+train")])
def test_train_split_parts(dataset, split):
    assert _error({"TRAIN_SPLIT": split}, dataset=dataset).startswith("TRAIN_SPLIT")


def test_hidden_size_must_divide_by_heads():
    assert _error({"HIDDEN_SIZE": 500}).startswith("HIDDEN_SIZE")


def test_max_epoch_at_least_one():
    assert _error({"MAX_EPOCH": 0}).startswith("MAX_EPOCH")


@pytest.mark.parametrize("run_mode", ["val", "test"])
def test_eval_run_needs_a_checkpoint(run_mode):
    message = _error(run_mode=run_mode)
    assert "CKPT_EPOCH" in message and "--CKPT_V" in message and "--CKPT_PATH" in message
    assert load_config("trar", "vqa", {"CKPT_VERSION": "x", "CKPT_EPOCH": 3}, run_mode=run_mode).CKPT_EPOCH == 3


def test_train_run_needs_no_checkpoint_unless_resuming():
    assert load_config("trar", "vqa").CKPT_EPOCH == 0
    assert _error({"RESUME": True}).startswith("RESUME")


def test_checkpoint_path_must_exist(tmp_path):
    assert _error({"CKPT_PATH": str(tmp_path / "missing.pkl")}, run_mode="val").startswith("CKPT_PATH")


def test_pair_without_yml_lists_existing_files(tmp_path, monkeypatch):
    (tmp_path / "vqa").mkdir()
    _write(tmp_path / "vqa" / "trar.yml", "LAYER: 6\n")
    monkeypatch.setattr(config_module, "CONFIGS_DIR", str(tmp_path))
    message = _error(model="mcan_small")
    assert "mcan_small" in message and "vqa/trar.yml" in message


def test_unknown_model_and_dataset():
    assert _error(model="vilbert").startswith("MODEL")
    assert _error(dataset="gqa").startswith("DATASET")


def test_derived_keys_cannot_be_set():
    assert "SUB_BATCH_SIZE" in _error({"SUB_BATCH_SIZE": 8})


def test_model_and_dataset_come_from_the_arguments(tmp_path):
    assert load_config("trar", "vqa", {"MODEL": "trar"}).MODEL == "trar"
    assert _error({"MODEL": "mcan_small"}).startswith("MODEL is chosen by --MODEL")
    extra = _write(tmp_path / "extra.yml", "DATASET: clevr\n")
    message = _error({"CONFIG": extra})
    assert message.startswith("DATASET") and extra in message
    with pytest.raises(ConfigError, match="^MODEL"):
        load_config("trar", "vqa").copy(MODEL="mcan_small")


def test_model_use_must_match_model():
    assert _error({"MODEL_USE": "mcan"}).startswith("MODEL_USE")


def test_feat_size_errors():
    assert "FEAT_SIZE.vqa.FRCN_FEAT_SIZ" in _error({"FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZ": [64, 2048]}}})
    assert _error({"FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": [64]}}}).startswith("FEAT_SIZE.vqa.FRCN_FEAT_SIZE")
    assert "FEAT_SIZE" in _error({"FEAT_SIZE": {"gqa": {}}})


def test_opt_params_are_literals_never_code():
    assert _error({"OPT_PARAMS": {"betas": '__import__("os")'}}).startswith("OPT_PARAMS.betas")


def test_gpu_ids():
    assert _error({"GPU": "cuda:0"}).startswith("GPU")


def test_bbox_features_need_region_features():
    assert _error({"USE_BBOX_FEAT": True}).startswith("USE_BBOX_FEAT")
    assert load_config("mcan_small", "vqa", {"USE_BBOX_FEAT": True}).USE_BBOX_FEAT is True


def test_trar_needs_grid_features():
    assert _error({"FEAT_TYPE": "region"}).startswith("FEAT_TYPE")


def test_version_must_be_a_file_name():
    assert _error({"VERSION": "a/b"}).startswith("VERSION")


def test_answer_types_checked():
    assert _error({"SUBSET_ANS_TYPES": ["yes/no", "colour"]}).startswith("SUBSET_ANS_TYPES")
    assert _error({"SUBSET_ANS_TYPES": ["number"]}, dataset="clevr").startswith("SUBSET_ANS_TYPES")


def test_errors_from_a_file_name_the_file(tmp_path):
    extra = _write(tmp_path / "extra.yml", "LAYER: six\n")
    message = _error({"CONFIG": extra})
    assert message.startswith("LAYER") and extra in message
    broken = _write(tmp_path / "broken.yml", "LAYER: [6\n")
    assert broken in _error({"CONFIG": broken})
    assert _error({"CONFIG": str(tmp_path / "none.yml")}).startswith("CONFIG")


def test_cross_key_error_names_the_file(tmp_path):
    extra = _write(tmp_path / "extra.yml", "HIDDEN_SIZE: 500\n")
    message = _error({"CONFIG": extra})
    assert message.startswith("HIDDEN_SIZE") and extra in message


# ---- merge order and nested values ----

def test_merge_order(tmp_path):
    # clevr/trar.yml sets LR_BASE 4e-5 over the 1e-4 default
    assert load_config("trar", "clevr").LR_BASE == 4e-5
    extra = _write(tmp_path / "extra.yml", "LR_BASE: 3.0e-5\nNUM_WORKERS: 5\n")
    cfg = load_config("trar", "clevr", {"CONFIG": extra})
    assert (cfg.LR_BASE, cfg.NUM_WORKERS, cfg.MAX_EPOCH) == (3e-5, 5, 16)
    cfg = load_config("trar", "clevr", {"CONFIG": extra, "LR_BASE": 2e-5})
    assert (cfg.LR_BASE, cfg.NUM_WORKERS) == (2e-5, 5)
    assert cfg.CONFIG == extra


def test_original_yml_loads_as_extra_config(tmp_path):
    original = _write(tmp_path / "trar.yml", "MODEL_USE: TRAR\nROUTING: 'hard'\nPOOLING: 'attention'\n"
                                              "OPT_PARAMS: {betas: '(0.9, 0.98)', eps: '1e-9'}\n")
    cfg = load_config("trar", "vqa", {"CONFIG": original})
    assert (cfg.MODEL_USE, cfg.ROUTING, cfg.POOLING) == ("trar", "hard", "attention")


def test_partial_feat_size_merges_into_defaults():
    cfg = load_config("mcan_small", "vqa", {"FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": [16, 64]}}})
    assert cfg.FEAT_SIZE == {"vqa": {"FRCN_FEAT_SIZE": (16, 64), "BBOX_FEAT_SIZE": (100, 5)},
                             "clevr": {"GRID_FEAT_SIZE": (196, 1024)}}
    assert all(type(v) is tuple for sizes in cfg.FEAT_SIZE.values() for v in sizes.values())
    cfg = load_config("trar", "vqa", {"IMG_SCALE": 4, "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": "(16, 64)"}}})
    assert cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"] == (16, 64)


def test_opt_params_parsed():
    assert load_config("trar", "vqa").OPT_PARAMS == {"betas": (0.9, 0.98), "eps": 1e-9}


# ---- derived values ----

def test_derived_values():
    cfg = load_config("mcan_large", "vqa", {"GPU": "0,1"})
    assert cfg.SPLIT == {"train": "train", "val": "val", "test": "test"}
    assert (cfg.SUB_BATCH_SIZE, cfg.EVAL_BATCH_SIZE, cfg.N_GPU) == (32, 16, 2)
    cfg = load_config("trar", "vqa", {"BATCH_SIZE": 2, "GRAD_ACCU_STEPS": 2, "GPU": ""})
    assert (cfg.SUB_BATCH_SIZE, cfg.EVAL_BATCH_SIZE, cfg.N_GPU) == (1, 1, 0)
    assert load_config("trar", "vqa", {"GPU": 3}).GPU == "3"


def test_eval_every_epoch_and_save_pred_forced():
    assert load_config("trar", "vqa").EVAL_EVERY_EPOCH is True
    assert load_config("trar", "vqa", {"TRAIN_SPLIT": "train+val+vg"}).EVAL_EVERY_EPOCH is False
    ckpt = {"CKPT_VERSION": "x", "CKPT_EPOCH": 1, "TEST_SAVE_PRED": True}
    assert load_config("trar", "vqa", ckpt, run_mode="val").EVAL_EVERY_EPOCH is False
    assert load_config("trar", "vqa", ckpt, run_mode="val").TEST_SAVE_PRED is False
    assert load_config("trar", "vqa", ckpt, run_mode="test").TEST_SAVE_PRED is True
    assert load_config("trar", "vqa", {"TEST_SAVE_PRED": True}).TEST_SAVE_PRED is False


def test_version_naming(tmp_path):
    cfg = load_config("trar", "vqa")
    assert re.fullmatch(r"trar_vqa_\d{8}-\d{6}", cfg.VERSION) and cfg.SEED == 0
    assert cfg.CKPT_VERSION == cfg.VERSION
    assert load_config("trar", "vqa", {"SEED": 7}).VERSION == "7"
    assert load_config("trar", "vqa", {"SEED": 7, "VERSION": "mine"}).VERSION == "mine"
    ckpt = tmp_path / "epoch13.pkl"
    ckpt.write_bytes(b"")
    cfg = load_config("trar", "vqa", {"CKPT_PATH": str(ckpt)}, run_mode="test")
    assert cfg.CKPT_VERSION == "epoch13"
    cfg = load_config("trar", "vqa", {"CKPT_PATH": str(ckpt), "CKPT_VERSION": "named"}, run_mode="test")
    assert cfg.CKPT_VERSION == "named"


def test_demo_data_root():
    assert load_config("trar", "demo").DATA_ROOT == os.path.join("data", "demo")
    assert load_config("trar", "vqa").DATA_ROOT == "data"


# ---- Config object ----

def test_str_is_the_original_dump():
    cfg = load_config("trar", "vqa", {"VERSION": "v"})
    lines = str(cfg).splitlines()
    assert "{ HIDDEN_SIZE       }->512" in lines
    assert "{ LR_DECAY_LIST     }->[10, 12]" in lines
    assert "{ SKIP_MISSING_FEATS }->False" in lines
    assert "{ OPT_PARAMS        }->{'betas': (0.9, 0.98), 'eps': 1e-09}" in lines
    names = [re.match(r"\{ (\S+) +\}->", line).group(1) for line in lines]
    assert names == sorted(names) and len(names) == len(cfg.to_dict())
    assert str(cfg).endswith("\n")


def test_copy_revalidates_and_keeps_the_run_name():
    cfg = load_config("trar", "vqa")
    small = cfg.copy(BATCH_SIZE=32, GRAD_ACCU_STEPS=2)
    assert (small.SUB_BATCH_SIZE, small.VERSION, cfg.BATCH_SIZE) == (16, cfg.VERSION, 64)
    val = cfg.copy(RUN_MODE="val")
    assert (val.RUN_MODE, val.EVAL_EVERY_EPOCH) == ("val", False)
    with pytest.raises(ConfigError, match="^LAYER"):
        cfg.copy(LAYER="x")
    with pytest.raises(ConfigError, match="^HIDDEN_SIZE"):
        cfg.copy(HIDDEN_SIZE=500)
    grid = cfg.copy(IMG_SCALE=4, FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": [16, 64]}})
    assert grid.FEAT_SIZE["vqa"] == {"FRCN_FEAT_SIZE": (16, 64), "BBOX_FEAT_SIZE": (100, 5)}


def test_config_is_read_only_and_pickles():
    cfg = load_config("trar", "demo")
    with pytest.raises(AttributeError, match="read-only"):
        cfg.LAYER = 3
    with pytest.raises(AttributeError, match="HIDDEN_SIZE"):
        _ = cfg.HIDDEN_SIZ
    again = pickle.loads(pickle.dumps(cfg))
    assert again.to_dict() == cfg.to_dict()
    d = cfg.to_dict()
    d["ORDERS"].append(9)
    assert cfg.ORDERS == [0, 1, 2]


def test_backend_names_match_registry():
    import backends  # the registry module imports no framework
    assert set(config_module.BACKENDS) == set(backends.BACKENDS)


# ---- shipped configs against the reference numbers ----

_NET_SMALL = dict(LAYER=6, HIDDEN_SIZE=512, FF_SIZE=2048, MULTI_HEAD=8, DROPOUT_R=0.1, FLAT_MLP_SIZE=512,
                  FLAT_GLIMPSES=1, FLAT_OUT_SIZE=1024)
_NET_LARGE = dict(_NET_SMALL, HIDDEN_SIZE=1024, FF_SIZE=4096, FLAT_OUT_SIZE=2048)
_VQA_RUN = dict(BATCH_SIZE=64, LR_BASE=1e-4, LR_DECAY_R=0.2, LR_DECAY_LIST=[10, 12], WARMUP_EPOCH=3, MAX_EPOCH=13,
                GRAD_NORM_CLIP=-1, GRAD_ACCU_STEPS=1, LOSS_FUNC="bce", LOSS_REDUCTION="sum", OPT="Adam",
                OPT_PARAMS={"betas": (0.9, 0.98), "eps": 1e-9})
_CLEVR_RUN = dict(_VQA_RUN, LR_BASE=4e-5, LR_DECAY_LIST=[13, 15], MAX_EPOCH=16, GRAD_ACCU_STEPS=2, LOSS_FUNC="ce")
_DEMO = dict(LAYER=2, HIDDEN_SIZE=64, FF_SIZE=128, MULTI_HEAD=4, FLAT_MLP_SIZE=64, FLAT_OUT_SIZE=128,
             WORD_EMBED_SIZE=32, USE_GLOVE=False, DROPOUT_R=0.1, BATCH_SIZE=32, LR_BASE=1e-3, WARMUP_EPOCH=1,
             LR_DECAY_LIST=[8], MAX_EPOCH=12)
_VIT_B16 = dict(PATCH_SIZE=16, HIDDEN_SIZE=768, FF_SIZE=3072, MULTI_HEAD=12, LAYER=12, DROPOUT_R=0.1,
                ATTN_DROPOUT_R=0.0, CLASSIFIER="token")
_VIT_RECIPE = dict(OPT="SGD", LR_BASE=0.03, LR_SCHEDULE="cosine", GRAD_NORM_CLIP=1.0, LOSS_FUNC="ce",
                   LOSS_REDUCTION="mean", LR_DECAY_LIST=[], BATCH_SIZE=512, GRAD_ACCU_STEPS=128)
_VIT_DEMO = dict(IMG_SIZE=32, PATCH_SIZE=4, IMG_SCALE=8, HIDDEN_SIZE=64, FF_SIZE=128, MULTI_HEAD=4, LAYER=4,
                 OPT="SGD", LR_BASE=0.1, LR_SCHEDULE="cosine", WARMUP_STEPS=30, LR_DECAY_LIST=[], BATCH_SIZE=32,
                 MAX_EPOCH=12, LOSS_FUNC="ce", LOSS_REDUCTION="mean")

EXPECTED = {
    ("vqa", "trar"): dict(_NET_SMALL, **_VQA_RUN, MODEL_USE="trar", ORDERS=[0, 1, 2, 3], IMG_SCALE=8, ROUTING="soft",
                          POOLING="avg", TAU_POLICY=1, TAU_MAX=10, TAU_MIN=0.1, BINARIZE=False, USE_BBOX_FEAT=False,
                          FEAT_TYPE="grid", FRCN=(64, 2048)),
    ("clevr", "trar"): dict(_NET_SMALL, **_CLEVR_RUN, MODEL_USE="trar", ORDERS=[0, 1, 3], IMG_SCALE=14,
                            ROUTING="hard", POOLING="fc", TAU_POLICY=0, TAU_MAX=10, TAU_MIN=0.1, BINARIZE=True,
                            GRID=(196, 1024)),
    ("vqa", "mcan_small"): dict(_NET_SMALL, **_VQA_RUN, MODEL_USE="mcan", FEAT_TYPE="region", FRCN=(100, 2048)),
    ("vqa", "mcan_large"): dict(_NET_LARGE, **dict(_VQA_RUN, LR_BASE=7e-5, GRAD_ACCU_STEPS=2), MODEL_USE="mcan",
                                FEAT_TYPE="region", FRCN=(100, 2048)),
    ("clevr", "mcan_small"): dict(_NET_SMALL, **_CLEVR_RUN, MODEL_USE="mcan", GRID=(196, 1024)),
    ("clevr", "mcan_large"): dict(_NET_LARGE, **_CLEVR_RUN, MODEL_USE="mcan", GRID=(196, 1024)),
    ("demo", "trar"): dict(_DEMO, MODEL_USE="trar", FEAT_TYPE="grid", FRCN=(36, 48), BBOX=(12, 5), IMG_SCALE=6,
                           ORDERS=[0, 1, 2], ROUTING="soft", POOLING="avg"),
    ("demo", "mcan_small"): dict(_DEMO, MODEL_USE="mcan", FEAT_TYPE="region", FRCN=(12, 48), BBOX=(12, 5)),
    ("demo_clevr", "trar"): dict(_DEMO, MODEL_USE="trar", DATA_FORMAT="clevr", GRID=(36, 48), IMG_SCALE=6,
                                 ORDERS=[0, 1, 2], LOSS_FUNC="ce"),
    ("demo_clevr", "mcan_small"): dict(_DEMO, MODEL_USE="mcan", DATA_FORMAT="clevr", GRID=(36, 48), LOSS_FUNC="ce"),
    # MMNasNet (reference mmnasnet.md §2 and §1.8): LR 1.2e-4 small / 7e-5 large, clip 1.0, pixel boxes
    ("vqa", "mmnasnet_small"): dict(_VQA_RUN, LR_BASE=1.2e-4, GRAD_NORM_CLIP=1.0, MODEL_USE="mmnasnet",
                                    HIDDEN_SIZE=512, MULTI_HEAD=8, REL_HBASE=64, REL_SIZE=64, FLAT_MLP_SIZE=512,
                                    FLAT_OUT_SIZE=1024, FEAT_TYPE="region", FRCN=(100, 2048), BBOX=(100, 5),
                                    USE_BBOX_FEAT=False, BBOX_NORMALIZE=False),
    ("vqa", "mmnasnet_large"): dict(_VQA_RUN, LR_BASE=7e-5, GRAD_NORM_CLIP=1.0, MODEL_USE="mmnasnet",
                                    HIDDEN_SIZE=1024, MULTI_HEAD=8, REL_HBASE=128, REL_SIZE=64, FLAT_MLP_SIZE=1024,
                                    FLAT_OUT_SIZE=2048, FEAT_TYPE="region", FRCN=(100, 2048), BBOX=(100, 5),
                                    USE_BBOX_FEAT=False, BBOX_NORMALIZE=False),
    ("demo", "mmnasnet_small"): dict(MODEL_USE="mmnasnet", HIDDEN_SIZE=64, REL_HBASE=16, FEAT_TYPE="region",
                                     FRCN=(12, 48), BBOX=(12, 5), BBOX_NORMALIZE=False),
    # RWSAN (reference rwsan.md §8.5 and §7.1): MAX_TOKEN 16, FF_SIZE derived, decay at 12 and 14 of 16
    ("vqa", "rwsan"): dict(MODEL_USE="rwsan", SRWSA_LAYER=3, SGRWSA_LAYER=3, HIDDEN_SIZE=512, FF_SIZE=2048,
                           MULTI_HEAD=4, DROPOUT_R=0.1, SRWSA_MIDSIZE=4, SGRWSA_SA_MIDSIZE=16, SGRWSA_GA_MIDSIZE=64,
                           FLAT_MLP_SIZE=256, FLAT_GLIMPSES=1, FLAT_OUT_SIZE=1024, WORD_EMBED_SIZE=300, USE_GLOVE=True,
                           MAX_TOKEN=16, FEAT_TYPE="region", FRCN=(100, 2048), USE_BBOX_FEAT=False, BATCH_SIZE=64,
                           LR_BASE=1e-4, LR_DECAY_R=0.2, LR_DECAY_LIST=[12, 14], WARMUP_EPOCH=3, MAX_EPOCH=16,
                           GRAD_NORM_CLIP=-1.0, GRAD_ACCU_STEPS=1, LOSS_FUNC="bce", LOSS_REDUCTION="sum",
                           OPT_PARAMS={"betas": (0.9, 0.98), "eps": 1e-9}, AMP=True),
    ("demo", "rwsan"): dict(MODEL_USE="rwsan", HIDDEN_SIZE=64, FF_SIZE=256, MULTI_HEAD=4, MAX_TOKEN=16,
                            FEAT_TYPE="region", FRCN=(12, 48), USE_GLOVE=False),
    # LSAT (reference lsat.md section 3): TRAR's networks and schedules without routing, windows of one grid row
    ("vqa", "lsat"): dict(_NET_SMALL, **_VQA_RUN, MODEL_USE="lsat", IMG_SCALE=8, LSAT_WINDOW=8, LSAT_LOOK_BACKWARD=1,
                          LSAT_LOOK_FORWARD=1, LSAT_ROTARY=False, USE_BBOX_FEAT=False, FEAT_TYPE="grid",
                          FRCN=(64, 2048)),
    ("clevr", "lsat"): dict(_NET_SMALL, **_CLEVR_RUN, MODEL_USE="lsat", IMG_SCALE=14, LSAT_WINDOW=14,
                            LSAT_LOOK_BACKWARD=1, LSAT_LOOK_FORWARD=1, LSAT_ROTARY=False, GRID=(196, 1024)),
    ("demo", "lsat"): dict(_DEMO, MODEL_USE="lsat", FEAT_TYPE="grid", FRCN=(36, 48), IMG_SCALE=6, LSAT_WINDOW=6,
                           LSAT_LOOK_BACKWARD=1, LSAT_LOOK_FORWARD=1, LSAT_ROTARY=False),
    ("demo_clevr", "lsat"): dict(_DEMO, MODEL_USE="lsat", DATA_FORMAT="clevr", GRID=(36, 48), IMG_SCALE=6,
                                 LSAT_WINDOW=6, LOSS_FUNC="ce"),
    # ViT (reference vit_trar.md: B/16, SGD 3e-2 momentum 0.9, cosine after a warm-up by steps, clip 1, mean CE)
    ("imagenet", "vit"): dict(_VIT_B16, **_VIT_RECIPE, MODEL_USE="vit", IMG_SIZE=384, IMG_SCALE=24, WARMUP_STEPS=1000),
    ("imagenet", "vit_trar"): dict(_VIT_B16, **_VIT_RECIPE, MODEL_USE="vit_trar", IMG_SIZE=384, IMG_SCALE=24,
                                   WARMUP_STEPS=1000, ORDERS=[0, 1, 2, 3], POOLING="avg", ROUTING="soft"),
    ("cifar100", "vit"): dict(_VIT_B16, **_VIT_RECIPE, MODEL_USE="vit", IMG_SIZE=224, IMG_SCALE=14, WARMUP_STEPS=100),
    ("demo_images", "vit"): dict(_VIT_DEMO, MODEL_USE="vit"),
    ("demo_images", "vit_trar"): dict(_VIT_DEMO, MODEL_USE="vit_trar", ORDERS=[0, 1, 2]),
}
_FEAT_KEYS = {"FRCN": ("vqa", "FRCN_FEAT_SIZE"), "BBOX": ("vqa", "BBOX_FEAT_SIZE"), "GRID": ("clevr", "GRID_FEAT_SIZE")}


@pytest.mark.parametrize("dataset, model", sorted(EXPECTED))
def test_shipped_config_values(dataset, model):
    cfg = load_config(model, dataset)
    for key, value in EXPECTED[(dataset, model)].items():
        if key in _FEAT_KEYS:
            fmt, name = _FEAT_KEYS[key]
            assert cfg.FEAT_SIZE[fmt][name] == value, key
        else:
            assert getattr(cfg, key) == value, key


def test_every_shipped_yml_is_checked():
    shipped = {(d, f[:-4]) for d in os.listdir(config_module.CONFIGS_DIR)
               for f in os.listdir(os.path.join(config_module.CONFIGS_DIR, d)) if f.endswith(".yml")}
    assert shipped == set(EXPECTED)
    assert {m for _, m in shipped} <= set(MODELS)
    assert {d for d, _ in shipped} <= set(DATASETS)


# ---- MMNasNet cross-key checks ----

@pytest.mark.parametrize("overrides, key", [
    ({"REL_HBASE": 48}, "REL_HBASE"),                                   # 512 % 48 != 0
    ({"ARCH": {"enc": ["SA", "GA"], "dec": ["GA"]}}, "ARCH"),            # GA needs the image: decoder only
    ({"ARCH": {"enc": ["SA"], "dec": []}}, "ARCH"),
    ({"FEAT_TYPE": "grid", "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": [64, 2048]}}}, "FEAT_TYPE"),
    ({"FEAT_SIZE": {"vqa": {"BBOX_FEAT_SIZE": [50, 5]}}}, "FEAT_SIZE"),
])
def test_mmnasnet_errors(overrides, key):
    message = _error(overrides, model="mmnasnet_small")
    assert message.startswith(key), message

