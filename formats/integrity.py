"""Checksums of checkpoint files, checked on every read path (both backends, the converter, deploy).

- torch zip files (.pkl) carry a CRC-32 per member; torch.load(weights_only=True) does not check it, so
  check_zip_crc reads every member first (zipfile.testzip).
- Paddle pairs: the .pdopt written with a .pdparams records the .pdparams's sha256 (PDPARAMS_SHA256) and a digest of
  its own other entries (PDOPT_SHA256). A .pdopt thus pairs with exactly the .pdparams bytes it was written with:
  a damaged .pdparams, a damaged .pdopt, or a pair mixed from two saves (a reused name and a kill between the two
  renames) is refused. The .pdparams itself stays a plain state dict (paddle.load + set_state_dict in a Paddle port
  see no new key). Files written before these keys existed load unchecked.
"""
import hashlib
import zipfile

import numpy as np

PDPARAMS_SHA256 = "pdparams_sha256"
PDOPT_SHA256 = "pdopt_sha256"


class CheckpointReadError(ValueError):
    """A file that is not a readable checkpoint (truncated, corrupt, another format); one line naming the file."""


def check_zip_crc(path):
    """Raise CheckpointReadError naming ``path`` and the first member whose CRC-32 (or header) is damaged."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CheckpointReadError(f"{path}: damaged zip checkpoint ({type(exc).__name__}: {exc}); restore it from a "
                                  "copy or save it again") from None
    if bad is not None:
        raise CheckpointReadError(f"{path}: damaged checkpoint: member {bad} fails its CRC-32 check (the file "
                                  "changed after it was written); restore it from a copy or save it again")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _feed(digest, obj):
    """A canonical byte stream of a tree of containers, arrays and scalars (what a .pdopt holds), independent of
    how pickling stored it (dict order, numpy scalar vs Python number, tuple vs list)."""
    if isinstance(obj, dict):
        digest.update(b"{")
        for key in sorted(obj, key=repr):
            _feed(digest, key)
            _feed(digest, obj[key])
        digest.update(b"}")
    elif isinstance(obj, (list, tuple)):
        digest.update(b"[")
        for value in obj:
            _feed(digest, value)
        digest.update(b"]")
    elif isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        digest.update(f"a{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    else:
        value = obj.item() if isinstance(obj, np.generic) else obj
        digest.update(f"s{type(value).__name__}:{value!r};".encode())


def content_sha256(obj):
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def pdopt_checksums(pdopt, pdparams_path):
    """The two checksum entries for a .pdopt holding ``pdopt`` (without them), written with the .pdparams at
    ``pdparams_path`` (already written)."""
    return {PDPARAMS_SHA256: file_sha256(pdparams_path), PDOPT_SHA256: content_sha256(pdopt)}


def check_pdopt(pdopt, pdopt_path, pdparams_path):
    """Refuse a damaged .pdopt, or a .pdparams other than the one the .pdopt was written with; a pair from before
    the checksums (no such keys) passes."""
    if PDOPT_SHA256 in pdopt:
        rest = {k: v for k, v in pdopt.items() if k not in (PDOPT_SHA256, PDPARAMS_SHA256)}
        if content_sha256(rest) != pdopt[PDOPT_SHA256]:
            raise CheckpointReadError(f"{pdopt_path}: damaged optimizer file: its content does not match the "
                                      "checksum it was written with; restore it from a copy")
    expected = pdopt.get(PDPARAMS_SHA256)
    if expected is not None:
        found = file_sha256(pdparams_path)
        if found != expected:
            raise CheckpointReadError(
                f"{pdparams_path} does not match {pdopt_path}: the .pdopt was written with a .pdparams of sha256 "
                f"{expected[:16]}..., this one has {found[:16]}... (damaged, or the two files come from different "
                "saves); restore the pair from one save")
