"""RWSAN (BrightQin/RWSAN cfgs/base_cfgs.py): the weight-sharing depths and the low-rank attention midsizes.

FF_SIZE is derived as 4 * HIDDEN_SIZE unless given (the original always derives it in proc()).
"""
DEFAULTS = {
    "SRWSA_LAYER": 3, "SGRWSA_LAYER": 3,                   # repetitions of the shared SRWSA / SGRWSA blocks
    "SRWSA_MIDSIZE": 4, "SGRWSA_SA_MIDSIZE": 16, "SGRWSA_GA_MIDSIZE": 64,   # per-head query/key widths
}
AT_LEAST = {key: 1 for key in DEFAULTS}


def validate(v, fail):
    if v["DATA_FORMAT"] != "vqa" or v["FEAT_TYPE"] != "region":
        fail("FEAT_TYPE", "RWSAN reads vqa 'region' features (FRCN_FEAT_SIZE); its code has no grid or CLEVR path")
    if v["USE_BBOX_FEAT"]:
        fail("USE_BBOX_FEAT", "RWSAN reads no box features; set USE_BBOX_FEAT False")
    if v["FLAT_GLIMPSES"] != 1:
        fail("FLAT_GLIMPSES", f"RWSAN's AttFlat has one glimpse, got {v['FLAT_GLIMPSES']}")


def derive(v, given):
    """Keys computed from others after validation, unless the config gives them (``given``: the keys set by a yml,
    --CONFIG or an override)."""
    if "FF_SIZE" not in given:
        v["FF_SIZE"] = 4 * v["HIDDEN_SIZE"]
