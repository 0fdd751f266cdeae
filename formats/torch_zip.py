"""Writes torch's zip checkpoint format from numpy, without torch: a Paddle-only machine can hand a `.pkl` to torch.

The archive is what torch.save writes (formats/restricted_pickle.py reads it): <name>/data.pkl, a protocol-2 pickle
whose tensors are torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()) with persistent
ids ('storage', torch.<Type>Storage, key, 'cpu', numel); <name>/data/<key>, each storage's raw little-endian bytes;
<name>/byteorder and <name>/version. The pickle is emitted opcode by opcode, since the standard pickler can name a
global (torch.FloatStorage) only when it can import it. torch.load(weights_only=True) accepts the file.
"""
import io
import struct
import zipfile

import numpy as np

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage", np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage",
}
_FORMAT_VERSION = b"3\n"       # torch.save's data format version


class _Emitter:
    """Pickle protocol 2 for containers, numbers, strings and numpy arrays (as torch tensors); no memo."""

    def __init__(self):
        self.out = io.BytesIO()
        self.storages = []          # (key, contiguous little-endian array)

    def _global(self, module, name):
        self.out.write(b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")

    def _tuple(self, items):
        self.out.write(b"(")
        for item in items:
            self.emit(item)
        self.out.write(b"t")

    def _tensor(self, array):
        if array.dtype not in _STORAGE_NAMES:
            raise TypeError(f"no torch storage type for numpy dtype {array.dtype}")
        data = np.require(array, array.dtype.newbyteorder("<"), ["C"])     # keeps a 0-d shape
        key = str(len(self.storages))
        self.storages.append((key, data))
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out.write(b"(")
        self.out.write(b"(")                                   # the persistent id of the storage
        self.emit("storage")
        self._global("torch", _STORAGE_NAMES[array.dtype])
        for item in (key, "cpu", int(data.size)):
            self.emit(item)
        self.out.write(b"tQ")
        self.emit(0)
        self._tuple(int(n) for n in data.shape)
        strides, step = [], 1
        for n in reversed(data.shape):
            strides.append(step)
            step *= int(n)
        self._tuple(reversed(strides))
        self.emit(False)
        self._global("collections", "OrderedDict")
        self.out.write(b")R")
        self.out.write(b"tR")

    def emit(self, obj):
        out = self.out
        if obj is None:
            out.write(b"N")
        elif obj is True or obj is False:
            out.write(b"\x88" if obj else b"\x89")
        elif isinstance(obj, np.ndarray):
            self._tensor(obj)
        elif isinstance(obj, np.generic):
            self.emit(obj.item())
        elif isinstance(obj, int):
            if -2 ** 31 <= obj < 2 ** 31:
                out.write(b"J" + struct.pack("<i", obj))
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                out.write(b"\x8a" + bytes([len(raw)]) + raw)
        elif isinstance(obj, float):
            out.write(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            raw = obj.encode("utf-8")
            out.write(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(obj, dict):
            if type(obj) is dict:
                out.write(b"}")
            else:
                self._global("collections", "OrderedDict")
                out.write(b")R")
            if obj:
                out.write(b"(")
                for key, value in obj.items():
                    self.emit(key)
                    self.emit(value)
                out.write(b"u")
        elif isinstance(obj, list):
            out.write(b"]")
            if obj:
                out.write(b"(")
                for item in obj:
                    self.emit(item)
                out.write(b"e")
        elif isinstance(obj, tuple):
            self._tuple(obj)
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} into a torch checkpoint")


def write_torch_zip(f, obj, name="archive"):
    """Write ``obj`` (dicts, lists, tuples, str, int, float, bool, None, numpy arrays as tensors) to the binary file
    object ``f`` in torch.save's zip format."""
    emitter = _Emitter()
    emitter.out.write(b"\x80\x02")
    emitter.emit(obj)
    emitter.out.write(b".")
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/data.pkl", emitter.out.getvalue())
        zf.writestr(f"{name}/byteorder", b"little")
        for key, data in emitter.storages:
            zf.writestr(f"{name}/data/{key}", data.tobytes())
        zf.writestr(f"{name}/version", _FORMAT_VERSION)
