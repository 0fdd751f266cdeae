"""LSAT (Shen et al., Applied Intelligence 2023), as reference lsat.md section 3 specifies it: MCAN on the image grid
whose decoder image self-attention is local (blocks of LSAT_WINDOW row-major tokens, each query seeing its own block
and LSAT_LOOK_BACKWARD / LSAT_LOOK_FORWARD blocks around it), with optional rotary positions (LSAT_ROTARY).

IMG_SCALE (the grid side, N = IMG_SCALE ** 2 tokens) is the key TRAR defines, with the same default.
"""
DEFAULTS = {
    "IMG_SCALE": 8, "LSAT_WINDOW": 8, "LSAT_LOOK_BACKWARD": 1, "LSAT_LOOK_FORWARD": 1, "LSAT_ROTARY": False,
}
AT_LEAST = {"LSAT_WINDOW": 1, "LSAT_LOOK_BACKWARD": 0, "LSAT_LOOK_FORWARD": 0}


def validate(v, fail):
    fmt, scale = v["DATA_FORMAT"], v["IMG_SCALE"]
    if fmt == "vqa":
        if v["FEAT_TYPE"] != "grid":
            fail("FEAT_TYPE", "LSAT needs 'grid' features (its windows are rows of the image grid)")
        name = "FRCN_FEAT_SIZE"
    else:
        name = "GRID_FEAT_SIZE"
    rows = v["FEAT_SIZE"][fmt][name][0]
    if rows != scale * scale:
        fail("IMG_SCALE", f"{scale}x{scale} grid needs FEAT_SIZE.{fmt}.{name} rows = {scale * scale}, got {rows}; "
                          f"set both IMG_SCALE and FEAT_SIZE")
    if rows % v["LSAT_WINDOW"]:
        fail("LSAT_WINDOW", f"{v['LSAT_WINDOW']} must divide the {rows} image tokens ({scale}x{scale} grid), e.g. "
                            f"{scale} for one grid row")
    head = v["HIDDEN_SIZE"] // v["MULTI_HEAD"]
    if v["LSAT_ROTARY"] and head % 2:
        fail("LSAT_ROTARY", f"rotary positions need an even head size, got HIDDEN_SIZE / MULTI_HEAD = {head}")
