"""MMNasNet (openvqa): the searched architecture and the box-relation attention; defaults from openvqa model_cfgs."""
# The searched operators (openvqa ARCH): encoder ops on the question, decoder ops on the image.
MMNAS_OPS = {"enc": ("SA", "FFN"), "dec": ("SA", "GA", "RSA", "FFN")}

# relation heads = HIDDEN_SIZE / REL_HBASE
DEFAULTS = {
    "REL_HBASE": 64, "REL_SIZE": 64,
    "ARCH": {"enc": ["SA", "SA", "SA", "SA", "FFN", "FFN", "FFN", "FFN", "SA", "FFN", "FFN", "FFN"],
             "dec": ["GA", "GA", "FFN", "FFN", "GA", "FFN", "RSA", "GA", "FFN", "GA", "RSA", "FFN", "RSA", "SA", "FFN",
                     "RSA", "GA", "FFN"]},
}
AT_LEAST = {"REL_HBASE": 1, "REL_SIZE": 1}


def validate(v, fail):
    if v["HIDDEN_SIZE"] % v["REL_HBASE"]:
        fail("REL_HBASE", f"HIDDEN_SIZE={v['HIDDEN_SIZE']} is not divisible by REL_HBASE={v['REL_HBASE']}")
    arch = v["ARCH"]
    if not isinstance(arch, dict) or sorted(arch) != ["dec", "enc"]:
        fail("ARCH", "expected a mapping with the op lists 'enc' and 'dec'")
    for part, allowed in MMNAS_OPS.items():
        ops = arch[part]
        if not isinstance(ops, list) or not ops or any(op not in allowed for op in ops):
            fail("ARCH", f"{part}: expected a non-empty list of {', '.join(allowed)}, got {ops!r}")
    if v["DATA_FORMAT"] != "vqa" or v["FEAT_TYPE"] != "region":
        fail("FEAT_TYPE", "MMNasNet needs vqa 'region' features (its relation attention uses the boxes)")
    if v["USE_BBOX_FEAT"]:
        fail("USE_BBOX_FEAT", "MMNasNet uses the raw boxes for its relations; set USE_BBOX_FEAT False")
    frcn, bbox = v["FEAT_SIZE"]["vqa"]["FRCN_FEAT_SIZE"][0], v["FEAT_SIZE"]["vqa"]["BBOX_FEAT_SIZE"][0]
    if frcn != bbox:
        fail("FEAT_SIZE", f"MMNasNet needs as many box rows as region rows (BBOX_FEAT_SIZE {bbox} vs "
                          f"FRCN_FEAT_SIZE {frcn})")
