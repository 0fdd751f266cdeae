"""Restricted readers for checkpoint pickles: torch files (zip and legacy) and Paddle files, into numpy, without torch.

A pickle can call any importable function while it loads. These readers resolve only the globals a checkpoint needs
(containers, tensor rebuilders, storage types, numpy array reconstruction) and map the torch ones to local numpy
stand-ins, so torch is never imported. Any other global (os.system, builtins.eval, subprocess.*, ...) raises
pickle.UnpicklingError naming it before anything is called.

Formats:
- torch zip (torch >= 1.6): an archive <name>/data.pkl + <name>/data/<key> (raw storage bytes) + <name>/byteorder.
  data.pkl's persistent ids are ('storage', <Type>Storage, key, location, numel).
- torch legacy (torch.save(..., _use_new_zipfile_serialization=False), and torch 0.4 model-zoo files): consecutive
  pickles magic number, protocol 1001, sys_info, the object (persistent ids ('storage', type, root_key, location,
  numel, view_metadata)), the sorted list of storage keys; then per key an int64 element count and the raw bytes.
- Paddle (paddle.save, .pdparams / .pdopt): one pickle of numpy arrays; Tensors outside a state dict are pickled as
  (name, ndarray) tuples and come back as the array.
"""
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from formats import adam_state
from formats.integrity import CheckpointReadError, check_pdopt, check_zip_crc
from formats.layout import DATA_HASH_KEYS

TORCH_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001
_MAGIC_BYTES = TORCH_MAGIC.to_bytes(10, "little")

# torch storage class name -> numpy dtype ('bfloat16' is widened to float32 on read)
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asking for something a checkpoint never needs (a global outside the allow-list, a tensor outside
    its storage): refused before anything runs."""


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Frozen:
    """Internal placeholders; a pickle's BUILD opcode must not rewrite them."""
    __slots__ = ()

    def __setstate__(self, state):
        raise RefusedPickle(f"a checkpoint tried to modify an internal {type(self).__name__}")


class _StorageRef(_Frozen):
    __slots__ = ("key", "dtype", "numel", "view")

    def __init__(self, key, dtype, numel, view=None):
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view


class _TensorRef(_Frozen):
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RefusedPickle(f"tensor {what} must be a tuple of ints, got {value!r}")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for torch._utils._rebuild_tensor(_v2): remember where the tensor lives; read after loading."""
    if not isinstance(storage, _StorageRef):
        raise RefusedPickle("a tensor must be rebuilt from a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise RefusedPickle(f"bad tensor storage offset {storage_offset!r}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride) or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise RefusedPickle(f"bad tensor size {size} / stride {stride}")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_state):
    return data


def _codecs_encode(obj, encoding="utf-8"):
    """Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise RefusedPickle("_codecs.encode is allowed only to rebuild bytes from a str")
    return obj.encode(encoding)


def _numpy_globals():
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    table = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    return table


_COMMON_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "tuple"): tuple, ("builtins", "list"): list, ("builtins", "dict"): dict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    **_numpy_globals(),
}
_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allowed globals; with ``torch=True`` also the tensor and storage names of torch checkpoints."""

    def __init__(self, file, torch=False, legacy=False):
        super().__init__(file)
        self._torch = torch
        self._legacy = legacy
        self.storages = {}

    def find_class(self, module, name):
        key = (module, name)
        if key in _COMMON_GLOBALS:
            return _COMMON_GLOBALS[key]
        if self._torch:
            if key in _TORCH_GLOBALS:
                return _TORCH_GLOBALS[key]
            if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
                return _StorageType(name)
        raise RefusedPickle(f"refused global {module}.{name}: a checkpoint needs only tensors, numbers "
                            f"and containers, so this file may run code when loaded")

    def persistent_load(self, pid):
        if not self._torch:
            raise RefusedPickle("unexpected persistent id in a plain pickle")
        if not isinstance(pid, tuple) or not pid:
            raise RefusedPickle(f"bad persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise RefusedPickle(f"refused persistent id of type {kind!r} (only storages are read)")
        expected = 6 if self._legacy else 5
        if len(pid) != expected:
            raise RefusedPickle(f"bad storage id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if self._legacy else None
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise RefusedPickle(f"bad storage id {pid!r}")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _StorageRef(key, storage_type.dtype, numel)
        if view is not None:
            view_key, offset, view_numel = view
            return _StorageRef(known.key, known.dtype, known.numel, (int(offset), int(view_numel)))
        return known


def _raw_dtype(dtype):
    return np.dtype(np.uint16 if dtype == "bfloat16" else dtype)


def _read_storage(f, numel, dtype, little_endian, what, available):
    """``numel`` elements of ``dtype`` from file object ``f`` into a new writable 1-d array."""
    raw = _raw_dtype(dtype)
    itemsize = raw.itemsize
    if numel < 0 or numel * itemsize > available:
        raise CheckpointReadError(f"{what} is truncated: expected {numel * itemsize} bytes, found {available}")
    buf = np.empty(numel, raw.newbyteorder("<" if little_endian else ">"))
    got = f.readinto(memoryview(buf).cast("B")) if numel else 0
    if got != numel * itemsize:
        raise CheckpointReadError(f"{what} is truncated: expected {numel * itemsize} bytes, found {got}")
    if dtype == "bfloat16":
        return (buf.astype(np.uint32) << 16).view(np.float32)
    return buf.astype(buf.dtype.newbyteorder("="), copy=False)


def _tensor_from(ref, data):
    storage = data[ref.storage.key]
    if ref.storage.view is not None:
        start, length = ref.storage.view
        if start < 0 or start + length > storage.size:
            raise RefusedPickle("storage view out of range")
        storage = storage[start:start + length]
    if any(n == 0 for n in ref.size):
        return np.empty(ref.size, storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= storage.size:
        raise RefusedPickle(f"tensor of size {ref.size} reaches past its storage of {storage.size} elements")
    count = int(np.prod(ref.size))
    if ref.stride == _contiguous_strides(ref.size):
        return storage[ref.offset:ref.offset + count].reshape(ref.size)  # a view: no copy of large weights
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.size,
                                           strides=[s * storage.itemsize for s in ref.stride], writeable=False)
    return np.array(view)


def _contiguous_strides(size):
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _resolve(obj, data):
    """Replace every _TensorRef in the loaded containers by its numpy array."""
    if isinstance(obj, _TensorRef):
        return _tensor_from(obj, data)
    if isinstance(obj, _StorageRef):
        return data[obj.key]
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _resolve(obj[k], data)
        return obj
    if isinstance(obj, list):
        obj[:] = [_resolve(v, data) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_resolve(v, data) for v in obj)
    return obj


def checkpoint_kind(path):
    """'torch-zip', 'torch-legacy', 'tar' (torch < 0.4) or 'pickle' (Paddle files, other pickles), by the first
    bytes."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if _MAGIC_BYTES in head[:32]:
        return "torch-legacy"
    if head[257:262] == b"ustar":
        return "tar"
    return "pickle"


def _fail(path, exc):
    reason = str(exc) or type(exc).__name__
    return CheckpointReadError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {reason}); "
                               f"the file may be truncated or of another format")


def _read_zip(path):
    check_zip_crc(path)     # reading a member checks its CRC only when it is read to the end
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkl:
            raise CheckpointReadError(f"{path}: a zip archive without data.pkl is not a torch checkpoint")
        prefix = pkl[0][:-len("data.pkl")]
        little = True
        if prefix + "byteorder" in names:
            little = zf.read(prefix + "byteorder").strip() != b"big"
        unpickler = RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), torch=True)
        obj = unpickler.load()
        data = {}
        for key, ref in unpickler.storages.items():
            entry = f"{prefix}data/{key}"
            size = zf.getinfo(entry).file_size
            with zf.open(entry) as f:
                data[key] = _read_storage(f, ref.numel, ref.dtype, little, f"{path}: {entry}", size)
    return _resolve(obj, data)


def _read_legacy(path):
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = RestrictedUnpickler(f)
        if header.load() != TORCH_MAGIC:
            raise CheckpointReadError(f"{path}: bad torch magic number")
        protocol = RestrictedUnpickler(f).load()
        if protocol != TORCH_LEGACY_PROTOCOL:
            raise CheckpointReadError(f"{path}: unknown torch legacy protocol {protocol!r}")
        sys_info = RestrictedUnpickler(f).load()
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        unpickler = RestrictedUnpickler(f, torch=True, legacy=True)
        obj = unpickler.load()
        keys = RestrictedUnpickler(f).load()
        data = {}
        for key in keys:
            if key not in unpickler.storages:
                raise CheckpointReadError(f"{path}: storage {key!r} is listed but never used")
            ref = unpickler.storages[key]
            (count,) = struct.unpack("<q" if little else ">q", f.read(8))
            if count != ref.numel:
                raise CheckpointReadError(f"{path}: storage {key!r} holds {count} elements, expected {ref.numel}")
            data[key] = _read_storage(f, count, ref.dtype, little, f"{path}: storage {key}", file_size - f.tell())
    return _resolve(obj, data)


def read_torch_checkpoint(path):
    """Whatever torch.save wrote to ``path`` (zip or legacy format), with every tensor as a numpy array."""
    try:
        kind = checkpoint_kind(path)
        if kind == "torch-zip":
            return _read_zip(path)
        if kind == "torch-legacy":
            return _read_legacy(path)
    except RefusedPickle as exc:
        raise RefusedPickle(f"{path}: {exc}") from None
    except (CheckpointReadError, FileNotFoundError):
        raise
    except Exception as exc:
        raise _fail(path, exc) from None
    if kind == "tar":
        raise CheckpointReadError(f"{path}: a tar-format checkpoint from torch < 0.4 is not supported; "
                                  f"load it with that torch and save it again")
    raise CheckpointReadError(f"{path}: not a torch checkpoint (no zip archive, no torch magic number)")


def _unwrap_paddle_tensors(obj):
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _unwrap_paddle_tensors(obj[k])
    elif isinstance(obj, list):
        obj[:] = [_unwrap_paddle_tensors(v) for v in obj]
    return obj


def read_pdparams(path):
    """What paddle.save wrote to ``path`` (.pdparams, .pdopt, or a pickled dict of arrays), tensors as numpy."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f).load()
    except RefusedPickle as exc:
        raise RefusedPickle(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise _fail(path, exc) from None
    if not isinstance(obj, dict):
        raise CheckpointReadError(f"{path}: expected a pickled dict of arrays, got {type(obj).__name__}")
    if "UnpackBigParamInfor@@" in obj:
        raise CheckpointReadError(f"{path}: parameters split by paddle.save protocol 2/3 are not supported; "
                                  f"save it again with protocol=4")
    return _unwrap_paddle_tensors(obj)


def pdopt_path(path):
    """The .pdopt that pairs with a .pdparams (``path`` may also be the stem)."""
    stem = path[:-len(".pdparams")] if path.endswith(".pdparams") else path
    return stem + ".pdopt"


def read_pdopt_meta(path, meta=None):
    """{'epoch', 'lr_base', 'optimizer'} from the .pdopt beside ``path``; ``meta``'s values where it has none; plus
    the DATA_HASH_KEYS the .pdopt holds. A .pdopt that does not pair with ``path`` (formats.integrity) is refused."""
    meta = dict(meta or {"epoch": None, "lr_base": None, "optimizer": None})
    opt_path = pdopt_path(path)
    if os.path.isfile(opt_path):
        saved = read_pdparams(opt_path)
        check_pdopt(saved, opt_path, path)
        meta.update({k: saved[k] for k in meta if saved.get(k) is not None})
        meta.update({k: saved[k] for k in DATA_HASH_KEYS if saved.get(k) is not None})
        entry = adam_state.paddle_entry(saved)   # Paddle's own keys (a .pdopt since set_state_dict takes it)
        if entry is not None:
            meta["optimizer"] = entry
    return meta
