#!/usr/bin/env python3
"""Convert a CLIPN / open_clip / Hugging Face CLIP checkpoint to a libclipn model file.

    python3 -I -S weights_tools/clipn_convert.py IN OUT [--quickgelu]
                  [--dtype f32|f16|bf16|int8]
                  [--vocab PATH] [--heads-vision N] [--heads-text N]

Standard library only (Python 3.9+): no torch, no numpy. The output format is
docs/model-format.md. Inputs, detected from their bytes:
  - torch.save zip files: CLIPN training checkpoints {'epoch','name','state_dict',
    'optimizer'} with `module.` key prefixes, or plain open_clip state dicts;
  - safetensors files: Hugging Face CLIPModel names (or open_clip names).
Pickles are read with an allow-list (tensor rebuild helpers, storage types, OrderedDict):
nothing in the file is ever executed. Exit status 0 on success, 1 on any refusal.
"""
import argparse
import collections
import functools
import gzip
import io
import itertools
import json
import os
import pickle
import re
import stat
import struct
import sys
import tempfile
import zipfile
import zlib

FORMAT_VERSION = 1
ALIGN = 64
CHUNK_ELEMS = 1 << 18            # elements converted and written at a time
MAX_PICKLE_BYTES = 64 << 20      # data.pkl of a real checkpoint is well under 1 MB
MAX_ST_HEADER_BYTES = 100 << 20  # same limit as the C loader
OFFICIAL_VOCAB = 49408           # 256 bytes + 256 bytes</w> + 48894 merges + sot + eot
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

# dtype name -> bytes per element. Only the float ones can be weights.
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
            "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
OUT_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "int8": "I8"}
# --dtype int8: the transformer blocks' linear weights and the token embeddings as I8 with
# F32 scales per row and group of INT8_GROUP columns (the library's INT8 scheme,
# docs/model-format.md); every other tensor F16.
INT8_GROUP = 64
INT8_WEIGHT = re.compile(r"(\.resblocks\.\d+\.(attn\.in_proj_weight|attn\.out_proj\.weight|"
                         r"mlp\.c_fc\.weight|mlp\.c_proj\.weight)|"
                         r"^token_embedding(_no)?\.weight)$")


class ConvertError(Exception):
    pass


# ----------------------------------------------------------------------------- storages

class ZipStorage:
    """One `<prefix>/data/<key>` member of a torch zip file; read lazily."""

    def __init__(self, zf, member, dtype, nbytes):
        self.zf, self.member, self.dtype, self.nbytes = zf, member, dtype, nbytes

    def read_chunks(self, begin, end, size):
        """Bytes [begin, end) of the member, `size` at a time, read in one pass."""
        try:
            with self.zf.open(self.member) as f:
                if begin:
                    f.seek(begin)
                for pos in range(begin, end, size):
                    data = f.read(min(size, end - pos))
                    if len(data) != min(size, end - pos):
                        raise ConvertError("archive member %s is truncated" % self.member)
                    yield data
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as e:
            raise ConvertError("archive member %s: %s" % (self.member, e))

    def read(self, begin, end):
        return b"".join(self.read_chunks(begin, end, max(1, end - begin)))


class FileStorage:
    """A byte range of a (safetensors) file."""

    def __init__(self, path, base, dtype, nbytes):
        self.path, self.base, self.dtype, self.nbytes = path, base, dtype, nbytes

    def read_chunks(self, begin, end, size):
        with open(self.path, "rb") as f:
            f.seek(self.base + begin)
            for pos in range(begin, end, size):
                data = f.read(min(size, end - pos))
                if len(data) != min(size, end - pos):
                    raise ConvertError("%s is truncated" % self.path)
                yield data

    def read(self, begin, end):
        return b"".join(self.read_chunks(begin, end, max(1, end - begin)))


class Tensor:
    """A strided view of a storage, like torch's: offsets and strides in elements."""
    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset = storage, offset
        self.shape, self.stride = tuple(shape), tuple(stride)

    def __setstate__(self, state):  # pickle BUILD on a tensor: never from torch
        raise ConvertError("unexpected pickle state for a tensor")

    @property
    def dtype(self):
        return self.storage.dtype

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def is_contiguous(self):
        expected = 1
        for d, s in zip(reversed(self.shape), reversed(self.stride)):
            if d != 1 and s != expected:
                return False
            expected *= d
        return True

    def check_bounds(self, what):
        es = ITEMSIZE[self.dtype]
        if self.numel() == 0:
            return
        if self.numel() * es > self.storage.nbytes:  # would let a tiny file expand hugely
            raise ConvertError("%s: view of shape %s has more elements than its storage"
                               % (what, list(self.shape)))
        last = self.offset + sum((d - 1) * s for d, s in zip(self.shape, self.stride))
        if (last + 1) * es > self.storage.nbytes:
            raise ConvertError("%s: view [offset %d, shape %s, stride %s] reaches beyond its "
                               "storage of %d bytes" % (what, self.offset, list(self.shape),
                                                        list(self.stride), self.storage.nbytes))

    def chunks(self):
        """The elements in row-major order, as raw bytes of self.dtype, a chunk at a time."""
        es, n = ITEMSIZE[self.dtype], self.numel()
        if self.is_contiguous():
            yield from self.storage.read_chunks(self.offset * es, (self.offset + n) * es,
                                                CHUNK_ELEMS * es)
            return
        # Non-contiguous (rare; transposed views): read the span, gather rows with slices.
        span = 1 + sum((d - 1) * s for d, s in zip(self.shape, self.stride))
        buf = self.storage.read(self.offset * es, (self.offset + span) * es)
        rows, cols, col_stride = self.shape[:-1], self.shape[-1], self.stride[-1]
        out = bytearray()
        for idx in itertools.product(*[range(d) for d in rows]):
            base = sum(i * s for i, s in zip(idx, self.stride[:-1])) * es
            if col_stride == 0:  # an expanded (broadcast) row
                out += buf[base:base + es] * cols
            else:
                row = bytearray(cols * es)
                for b in range(es):  # byte b of every element, strided
                    row[b::es] = buf[base + b: base + b + (cols - 1) * col_stride * es + 1:
                                     col_stride * es]
                out += row
            if len(out) >= CHUNK_ELEMS * es:
                yield bytes(out)
                out = bytearray()
        if out:
            yield bytes(out)


# ----------------------------------------------------------------------------- dtype conversion

@functools.lru_cache(maxsize=None)  # one entry per power of two
def _lane_constants(n):
    """For n 64-bit lanes: (ones, 0x7FFF per lane, 0x7FFFFFFF per lane,
    0xFFFFFFFF - 0x7F800000 per lane, bit 32 of every lane)."""
    ones = int.from_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00" * n, "little")
    return ones, 0x7FFF * ones, 0x7FFFFFFF * ones, (0xFFFFFFFF - 0x7F800000) * ones, ones << 32


def _bf16_one(u):
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return 0x7FC0  # NaN, as torch's round_to_nearest_even
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def f32_to_bf16(data):
    """Round to nearest even, like torch's .bfloat16(), without a per-element loop:
    every f32 goes into its own 64-bit lane of one big integer, so the rounding add
    (at most 33 bits) never carries into the next lane."""
    n = len(data) // 4
    lanes_n = max(1024, 1 << (n - 1).bit_length())  # few sizes, so the constants are reused
    lanes = bytearray(8 * lanes_n)
    for b in range(4):
        lanes[b:8 * n:8] = data[b::4]
    x = int.from_bytes(lanes, "little")
    ones, half_minus_1, abs_mask, nan_bias, bit32 = _lane_constants(lanes_n)
    # NaN iff (u & 0x7FFFFFFF) > 0x7F800000: add the complement and look at bit 32.
    if ((x & abs_mask) + nan_bias) & bit32:
        words = struct.unpack("<%dI" % n, data)
        return struct.pack("<%dH" % n, *[_bf16_one(u) for u in words])
    x += half_minus_1 + ((x >> 16) & ones)
    rounded = x.to_bytes(8 * lanes_n, "little")
    out = bytearray(2 * n)
    out[0::2] = rounded[2:8 * n:8]
    out[1::2] = rounded[3:8 * n:8]
    return bytes(out)


def bf16_to_f32(data):
    out = bytearray(2 * len(data))  # bf16 is the top half of an f32: exact
    out[2::4] = data[0::2]
    out[3::4] = data[1::2]
    return bytes(out)


def f32_to_f16(data):
    n = len(data) // 4
    values = struct.unpack("<%df" % n, data)
    try:
        return struct.pack("<%de" % n, *values)  # struct rounds half to even, like torch
    except OverflowError:  # |x| beyond f16 range: torch gives inf
        out = []
        for v in values:
            try:
                out.append(struct.pack("<e", v))
            except OverflowError:
                out.append(struct.pack("<e", float("inf") if v > 0 else float("-inf")))
        return b"".join(out)


def to_f32(data, dtype):
    if dtype == "F32":
        return data
    if dtype == "BF16":
        return bf16_to_f32(data)
    if dtype == "F16":
        n = len(data) // 2
        return struct.pack("<%df" % n, *struct.unpack("<%de" % n, data))
    if dtype == "F64":
        n = len(data) // 8
        values = struct.unpack("<%dd" % n, data)
        try:
            return struct.pack("<%df" % n, *values)
        except OverflowError:
            raise ConvertError("an F64 weight is beyond the f32 range")
    raise ConvertError("cannot convert %s to a float weight" % dtype)


def _f32(values):
    """Round doubles to float32 (nearest even), as the C code's float arithmetic."""
    return struct.unpack("<%df" % len(values), struct.pack("<%df" % len(values), *values))


def quantize_int8(data, rows, cols, group=INT8_GROUP):
    """f32 bytes [rows, cols] -> (I8 bytes, F32 scale bytes [rows, ceil(cols / group)]),
    the exact values the C packer computes (kernels/gemm_int8.c): scale = max|w| / 127 and
    q = w * (127 / max|w|) in float32, rounded to nearest even, within [-127, 127]."""
    values = struct.unpack("<%df" % (rows * cols), data)
    q, scales = bytearray(rows * cols), []
    for r in range(rows):
        row = values[r * cols:(r + 1) * cols]
        for g0 in range(0, cols, group):
            part = row[g0:g0 + group]
            amax = max(map(abs, part))
            if amax != amax or amax == float("inf"):
                raise ConvertError("a weight to quantize is not finite")
            scale, inv = _f32([amax / 127.0, 127.0 / amax if amax > 0 else 0.0])
            scales.append(scale)
            prods = _f32([v * inv for v in part])
            base = r * cols + g0
            q[base:base + len(part)] = bytes(
                max(-127, min(127, round(p))) & 0xFF for p in prods)
    return bytes(q), struct.pack("<%df" % len(scales), *scales)


def quantize_stream(f32_chunks, rows, cols, write):
    """quantize_int8 over f32 bytes arriving in chunks, a block of whole rows at a time (the
    values do not depend on the blocks: scales are per row), so that memory stays bounded
    for a 49408-row token embedding. Writes the I8 bytes; returns (their count, the scale
    bytes)."""
    row_bytes, buf, scales, n = cols * 4, bytearray(), [], 0
    block = max(1, (256 << 10) // cols) * row_bytes  # ~256 Ki values

    def flush(nbytes):
        nonlocal n
        q, sc = quantize_int8(bytes(buf[:nbytes]), nbytes // row_bytes, cols)
        del buf[:nbytes]
        write(q)
        scales.append(sc)
        n += len(q)

    for chunk in f32_chunks:
        buf += chunk
        while len(buf) >= block:
            flush(block)
    if len(buf) % row_bytes or len(buf) + n * 4 != rows * row_bytes:
        raise ConvertError("internal: %d bytes of f32 rows to quantize, expected %d"
                           % (len(buf) + n * 4, rows * row_bytes))
    if buf:
        flush(len(buf))
    return n, b"".join(scales)


def convert(data, src, dst):
    if src == dst:
        return data
    f32 = to_f32(data, src)
    if dst == "F32":
        return f32
    return f32_to_f16(f32) if dst == "F16" else f32_to_bf16(f32)


# ----------------------------------------------------------------------------- torch zip files

class StorageType:
    """Stand-in for torch.FloatStorage & co. in the pickle; carries only the dtype."""

    def __init__(self, qualname, dtype):
        self.qualname, self.dtype = qualname, dtype

    def __repr__(self):
        return self.qualname

    def __setstate__(self, state):  # pickle BUILD must not retype a shared stand-in
        raise ConvertError("unexpected pickle state for %s" % self.qualname)


class TensorType:
    """Stand-in for torch.Tensor / torch.nn.Parameter (as _rebuild_from_type_v2's type)."""


def _check_ints(what, values):
    """Sizes and strides: small non-negative ints."""
    if not isinstance(values, (tuple, list)):
        raise ConvertError("bad tensor %s: %.100r" % (what, values))
    for v in values:
        if type(v) is not int or v < 0 or v > 1 << 48:
            raise ConvertError("bad tensor %s: %.100r" % (what, values))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, ZipStorage):
        raise ConvertError("tensor rebuilt from something that is not a storage")
    if type(storage_offset) is not int or storage_offset < 0:
        raise ConvertError("bad tensor storage offset in the pickle")
    _check_ints("size", size)
    _check_ints("stride", stride)
    if len(size) != len(stride):
        raise ConvertError("tensor size and stride differ in length")
    t = Tensor(storage, storage_offset, size, stride)
    t.check_bounds("tensor in storage %s" % storage.member)
    return t


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, Tensor):
        raise ConvertError("parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor_v2, _rebuild_parameter) or new_type is not TensorType:
        raise ConvertError("unsupported tensor subclass rebuild in the pickle")
    if not isinstance(args, tuple):
        raise ConvertError("bad tensor rebuild arguments in the pickle")
    return func(*args)


_STORAGE_DTYPES = {"FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
                   "DoubleStorage": "F64", "LongStorage": "I64", "IntStorage": "I32",
                   "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
                   "BoolStorage": "BOOL"}

ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): TensorType,
    ("torch.nn.parameter", "Parameter"): TensorType,
    ("torch", "UntypedStorage"): StorageType("torch.UntypedStorage", "U8"),
    ("torch.storage", "UntypedStorage"): StorageType("torch.storage.UntypedStorage", "U8"),
    ("torch.storage", "_UntypedStorage"): StorageType("torch.storage._UntypedStorage", "U8"),
}
for _name, _dtype in _STORAGE_DTYPES.items():
    for _module in ("torch", "torch.cuda"):  # GPU-saved checkpoints name torch.cuda.*
        ALLOWED_GLOBALS[(_module, _name)] = StorageType("%s.%s" % (_module, _name), _dtype)

_KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class SafeUnpickler(pickle.Unpickler):
    """Builds stand-ins for the allow-listed globals; refuses every other global."""

    def __init__(self, file, zf, prefix):
        super().__init__(file)
        self.zf, self.prefix, self.storages = zf, prefix, {}

    def find_class(self, module, name):
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise ConvertError("refusing to unpickle %s.%s: not a tensor, storage or plain "
                               "container (the file may be malicious)" % (module, name))
        return obj

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ConvertError("refusing persistent id %.100r: not a torch storage" % (pid,))
        _, stype, key, _location, numel = pid
        if not isinstance(stype, StorageType):
            raise ConvertError("refusing persistent id with storage type %.100r" % (stype,))
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ConvertError("refusing storage key %.100r: not a plain name" % (key,))
        if type(numel) is not int or numel < 0:
            raise ConvertError("storage %s: bad element count %.100r" % (key, numel))
        member = self.prefix + "data/" + key
        try:
            info = self.zf.getinfo(member)
        except KeyError:
            raise ConvertError("storage %s points to %s, which is not in the archive"
                               % (key, member))
        nbytes = numel * ITEMSIZE[stype.dtype]
        if nbytes > info.file_size:
            raise ConvertError("storage %s declares %d bytes but archive member %s holds %d"
                               % (key, nbytes, member, info.file_size))
        cache_key = (key, stype.dtype)
        if cache_key not in self.storages:
            self.storages[cache_key] = ZipStorage(self.zf, member, stype.dtype, nbytes)
        return self.storages[cache_key]


def _check_member_name(name):
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
        raise ConvertError("refusing archive member %r: absolute path or '..'" % name)


def read_torch_zip(path):
    """Returns the unpickled object, tensors as lazy Tensor views of the zip."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConvertError("%s: not a readable zip file (%s)" % (path, e))
    names = zf.namelist()
    if len(set(names)) != len(names):
        raise ConvertError("refusing archive with duplicate member names")
    for n in names:
        _check_member_name(n)
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ConvertError("%s: not a torch.save file (expected one data.pkl, found %d)"
                           % (path, len(pickles)))
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() != b"little":
        raise ConvertError("big-endian torch files are not supported")
    info = zf.getinfo(pickles[0])
    if info.file_size > MAX_PICKLE_BYTES:
        raise ConvertError("data.pkl is %d bytes: too big for a checkpoint" % info.file_size)
    with zf.open(info) as f:
        data = f.read(MAX_PICKLE_BYTES + 1)
    if len(data) > MAX_PICKLE_BYTES:
        raise ConvertError("data.pkl is larger than its directory entry says")
    try:
        return SafeUnpickler(io.BytesIO(data), zf, prefix).load()
    except ConvertError:
        raise
    except Exception as e:  # malformed or hostile pickles fail in many ways
        raise ConvertError("malformed pickle in %s: %s: %s" % (path, type(e).__name__, e))


# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}


def read_safetensors(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ConvertError("%s: too short for safetensors" % path)
        n = struct.unpack("<Q", head)[0]
        if n > MAX_ST_HEADER_BYTES or 8 + n > size:
            raise ConvertError("%s: bad safetensors header length %d" % (path, n))
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConvertError("%s: bad safetensors header: %s" % (path, e))
    if not isinstance(header, dict):
        raise ConvertError("%s: safetensors header is not an object" % path)
    data_size = size - 8 - n
    tensors = collections.OrderedDict()
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise ConvertError("%s: bad safetensors entry for %s" % (path, name))
        if dtype not in _ST_DTYPES:
            raise ConvertError("%s: tensor %s has unsupported dtype %r" % (path, name, dtype))
        _check_ints("shape of %s" % name, shape)
        numel = 1
        for d in shape:
            numel *= d
        if (type(begin) is not int or type(end) is not int or not 0 <= begin <= end
                or end > data_size or end - begin != numel * ITEMSIZE[dtype]):
            raise ConvertError("%s: tensor %s has bad data_offsets %r for shape %s %s"
                               % (path, name, [begin, end], shape, dtype))
        storage = FileStorage(path, 8 + n + begin, dtype, end - begin)
        strides, s = [], 1
        for d in reversed(shape):
            strides.insert(0, s)
            s *= d
        tensors[name] = Tensor(storage, 0, shape, strides)
    return tensors


# ----------------------------------------------------------------------------- names and shapes

def _transposed(t):
    if len(t.shape) != 2:
        raise ConvertError("expected a 2-D tensor to transpose, found shape %s" % list(t.shape))
    return Tensor(t.storage, t.offset, t.shape[::-1], t.stride[::-1])


def from_hf_names(hf):
    """Hugging Face CLIPModel names -> open_clip names. Values are lists of parts that are
    concatenated along dim 0 (q, k, v -> in_proj)."""
    out = collections.OrderedDict()
    used = set()

    def take(src):
        if src not in hf:
            raise ConvertError("missing tensor %s (Hugging Face CLIP file)" % src)
        used.add(src)
        return hf[src]

    def tower(src, dst):
        layers = sorted({int(m.group(1)) for m in
                         (re.match(re.escape(src) + r"\.encoder\.layers\.(\d+)\.", k)
                          for k in hf) if m})
        for i in layers:
            s, d = "%s.encoder.layers.%d." % (src, i), "%s.resblocks.%d." % (dst, i)
            out[d + "ln_1.weight"] = [take(s + "layer_norm1.weight")]
            out[d + "ln_1.bias"] = [take(s + "layer_norm1.bias")]
            out[d + "attn.in_proj_weight"] = [take(s + "self_attn.%s_proj.weight" % p)
                                              for p in "qkv"]
            out[d + "attn.in_proj_bias"] = [take(s + "self_attn.%s_proj.bias" % p)
                                            for p in "qkv"]
            out[d + "attn.out_proj.weight"] = [take(s + "self_attn.out_proj.weight")]
            out[d + "attn.out_proj.bias"] = [take(s + "self_attn.out_proj.bias")]
            out[d + "ln_2.weight"] = [take(s + "layer_norm2.weight")]
            out[d + "ln_2.bias"] = [take(s + "layer_norm2.bias")]
            out[d + "mlp.c_fc.weight"] = [take(s + "mlp.fc1.weight")]
            out[d + "mlp.c_fc.bias"] = [take(s + "mlp.fc1.bias")]
            out[d + "mlp.c_proj.weight"] = [take(s + "mlp.fc2.weight")]
            out[d + "mlp.c_proj.bias"] = [take(s + "mlp.fc2.bias")]

    v, t = "vision_model.", "text_model."
    out["visual.conv1.weight"] = [take(v + "embeddings.patch_embedding.weight")]
    out["visual.class_embedding"] = [take(v + "embeddings.class_embedding")]
    out["visual.positional_embedding"] = [take(v + "embeddings.position_embedding.weight")]
    out["visual.ln_pre.weight"] = [take(v + "pre_layrnorm.weight")]
    out["visual.ln_pre.bias"] = [take(v + "pre_layrnorm.bias")]
    tower("vision_model", "visual.transformer")
    out["visual.ln_post.weight"] = [take(v + "post_layernorm.weight")]
    out["visual.ln_post.bias"] = [take(v + "post_layernorm.bias")]
    out["visual.proj"] = [_transposed(take("visual_projection.weight"))]
    out["token_embedding.weight"] = [take(t + "embeddings.token_embedding.weight")]
    out["positional_embedding"] = [take(t + "embeddings.position_embedding.weight")]
    tower("text_model", "transformer")
    out["ln_final.weight"] = [take(t + "final_layer_norm.weight")]
    out["ln_final.bias"] = [take(t + "final_layer_norm.bias")]
    out["text_projection"] = [_transposed(take("text_projection.weight"))]
    out["logit_scale"] = [take("logit_scale")]
    return out, [k for k in hf if k not in used]


def block_shapes(prefix, width, mlp):
    return [(prefix + "ln_1.weight", [width]), (prefix + "ln_1.bias", [width]),
            (prefix + "attn.in_proj_weight", [3 * width, width]),
            (prefix + "attn.in_proj_bias", [3 * width]),
            (prefix + "attn.out_proj.weight", [width, width]),
            (prefix + "attn.out_proj.bias", [width]),
            (prefix + "ln_2.weight", [width]), (prefix + "ln_2.bias", [width]),
            (prefix + "mlp.c_fc.weight", [mlp, width]), (prefix + "mlp.c_fc.bias", [mlp]),
            (prefix + "mlp.c_proj.weight", [width, mlp]), (prefix + "mlp.c_proj.bias", [width])]


def expected_shapes(c):
    """Every tensor of the model file for config c, in file order (docs/model-format.md)."""
    W, P, E = c["vision_width"], c["patch_size"], c["embed_dim"]
    T, C, V = c["text_width"], c["context_length"], c["vocab_size"]
    G = c["image_size"] // P
    out = [("visual.conv1.weight", [W, 3, P, P]), ("visual.class_embedding", [W]),
           ("visual.positional_embedding", [G * G + 1, W]),
           ("visual.ln_pre.weight", [W]), ("visual.ln_pre.bias", [W])]
    for i in range(c["vision_layers"]):
        out += block_shapes("visual.transformer.resblocks.%d." % i, W, c["vision_mlp_width"])
    out += [("visual.ln_post.weight", [W]), ("visual.ln_post.bias", [W]),
            ("visual.proj", [W, E])]

    def text(suffix):
        t = [("token_embedding%s.weight" % suffix, [V, T]),
             ("positional_embedding" + suffix, [C, T])]
        for i in range(c["text_layers"]):
            t += block_shapes("transformer%s.resblocks.%d." % (suffix, i), T,
                              c["text_mlp_width"])
        return t + [("ln_final%s.weight" % suffix, [T]), ("ln_final%s.bias" % suffix, [T]),
                    ("text_projection" + suffix, [T, E])]

    out += text("") + [("logit_scale", [])]
    if c["has_no_tower"]:
        out += text("_no")
    if c["has_prompt_no"]:
        out.append(("prompt_no", [c["n_prompt_no"], C, T]))
    return out


def part_shape(parts):
    """Shape of the dim-0 concatenation of parts (None if they do not fit together)."""
    shape = list(parts[0].shape)
    for p in parts[1:]:
        if not shape or list(p.shape[1:]) != shape[1:]:
            return None
        shape[0] += p.shape[0]
    return shape


def infer_config(sd, args):
    """Config from tensor shapes; every tensor is checked against it afterwards."""
    def shape(name, ndim):
        if name not in sd:
            raise ConvertError("missing tensor %s" % name)
        s = part_shape(sd[name])
        if s is None or len(s) != ndim:
            raise ConvertError("tensor %s: expected %d dimensions, found shape %s"
                               % (name, ndim, s))
        return s

    def layers(prefix):
        idx = {int(m.group(1)) for m in (re.match(re.escape(prefix) + r"(\d+)\.", k)
                                         for k in sd) if m}
        if not idx:
            raise ConvertError("missing tensors %s0.*" % prefix)
        return max(idx) + 1

    W, three, P, P2 = shape("visual.conv1.weight", 4)
    if three != 3 or P != P2:
        raise ConvertError("tensor visual.conv1.weight: expected [W, 3, P, P], found %s"
                           % ([W, three, P, P2],))
    n_pos = shape("visual.positional_embedding", 2)[0]
    grid = int(round((n_pos - 1) ** 0.5))
    if n_pos < 2 or grid * grid != n_pos - 1:
        raise ConvertError("tensor visual.positional_embedding: %d rows is not 1 + a square "
                           "number of patches" % n_pos)
    V, T = shape("token_embedding.weight", 2)
    c = collections.OrderedDict()
    c["format_version"] = FORMAT_VERSION
    c["embed_dim"] = shape("visual.proj", 2)[1]
    c["image_size"] = grid * P
    c["patch_size"] = P
    c["vision_width"] = W
    c["vision_layers"] = layers("visual.transformer.resblocks.")
    c["vision_heads"] = args.heads_vision or max(1, W // 64)
    c["vision_mlp_width"] = shape("visual.transformer.resblocks.0.mlp.c_fc.weight", 2)[0]
    c["context_length"] = shape("positional_embedding", 2)[0]
    c["vocab_size"] = V
    c["text_width"] = T
    c["text_layers"] = layers("transformer.resblocks.")
    c["text_heads"] = args.heads_text or max(1, T // 64)
    c["text_mlp_width"] = shape("transformer.resblocks.0.mlp.c_fc.weight", 2)[0]
    c["activation"] = "quickgelu" if args.quickgelu else "gelu"
    c["ln_eps"] = 1e-5
    # Special tokens follow the merges: with a cut-down vocab only V - 514 merges fit.
    c["pad_id"] = 0
    c["sot_id"] = min(V, OFFICIAL_VOCAB) - 2
    c["eot_id"] = min(V, OFFICIAL_VOCAB) - 1
    c["pooling"] = "argmax"
    c["has_no_tower"] = any(k.endswith("_no") or "_no." in k for k in sd if k != "prompt_no")
    c["has_prompt_no"] = "prompt_no" in sd
    c["n_prompt_no"] = shape("prompt_no", 3)[0] if "prompt_no" in sd else 0
    c["image_mean"] = list(OPENAI_MEAN)
    c["image_std"] = list(OPENAI_STD)
    if c["has_prompt_no"] and not c["has_no_tower"]:
        raise ConvertError("tensor prompt_no is present but the _no text tower is not")
    if V < 514 + 2:
        raise ConvertError("tensor token_embedding.weight: vocab of %d rows cannot hold the "
                           "512 byte tokens and the two special tokens" % V)
    for tower in ("vision", "text"):
        w, h = c[tower + "_width"], c[tower + "_heads"]
        if h < 1 or w % h:
            raise ConvertError("%s width %d is not divisible by %d heads" % (tower, w, h))
    return c


def check_tensors(sd, cfg):
    """Missing or mis-shaped tensors, named; returns the planned (name, parts) list."""
    problems, plan = [], []
    for name, want in expected_shapes(cfg):
        if name not in sd:
            problems.append("missing tensor %s (expected shape %s)" % (name, want))
            continue
        found = part_shape(sd[name])
        if found != want:
            problems.append("tensor %s: expected shape %s, found %s" % (name, want, found))
            continue
        for p in sd[name]:
            if p.dtype not in FLOAT_DTYPES:
                problems.append("tensor %s: dtype %s is not a float type" % (name, p.dtype))
        plan.append((name, sd[name]))
    if problems:
        more = "" if len(problems) <= 20 else "\n  ... and %d more" % (len(problems) - 20)
        raise ConvertError("the checkpoint does not match a %s model:\n  %s%s"
                           % ("CLIPN" if cfg["has_no_tower"] else "CLIP",
                              "\n  ".join(problems[:20]), more))
    return plan


# ----------------------------------------------------------------------------- vocab

def read_merges(path, vocab_size):
    """The merge lines of the BPE vocab file (header line skipped), each ending in "\\n";
    as many as the vocab holds (48894 for the official 49408)."""
    try:
        with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
            text = f.read(64 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ConvertError("cannot read the BPE vocab %s: %s" % (path, e))
    n = min(vocab_size, OFFICIAL_VOCAB) - 512 - 2
    lines = text.split("\n")[1:1 + n]
    if len(lines) != n:
        raise ConvertError("BPE vocab %s has %d merges, need %d" % (path, len(lines), n))
    for i, line in enumerate(lines):
        if len(line.split()) != 2:
            raise ConvertError("BPE vocab %s line %d is not a merge: %r" % (path, i + 2, line))
    return "".join(line + "\n" for line in lines).encode("utf-8")


# ----------------------------------------------------------------------------- reading input

def load_state_dict(path, warn):
    """name -> [Tensor parts] in open_clip names, and the source kind."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        top = read_torch_zip(path)
        sd = top
        if isinstance(top, dict) and isinstance(top.get("state_dict"), dict):
            sd = top["state_dict"]
        if not isinstance(sd, dict):
            raise ConvertError("%s holds a %s, not a state dict" % (path, type(sd).__name__))
        tensors = collections.OrderedDict()
        for k, v in sd.items():
            if isinstance(k, str) and isinstance(v, Tensor):
                tensors[k[len("module."):] if k.startswith("module.") else k] = v
    elif len(head) >= 9 and head[8:9] == b"{":
        tensors = read_safetensors(path)
    elif head[:1] == b"\x80":  # a bare pickle: torch.save before the zip format
        raise ConvertError("%s is a legacy (pre-zip) torch.save file; this converter reads "
                           "only the zip format of torch >= 1.6. Re-save it with a recent "
                           "torch (only if you trust the file)." % path)
    else:
        raise ConvertError("%s: unknown format (not a torch.save zip nor safetensors)" % path)

    if "vision_model.embeddings.patch_embedding.weight" in tensors:
        sd, unused = from_hf_names(tensors)
        unused = [k for k in unused if not k.endswith("position_ids")]
        if unused:
            warn("dropping %d Hugging Face tensors not used at inference: %s"
                 % (len(unused), ", ".join(unused[:5])))
        return sd, "hf_clip"
    sd = collections.OrderedDict((k, [v]) for k, v in tensors.items())
    return sd, ("clipn_checkpoint" if "token_embedding_no.weight" in sd else "open_clip")


# ----------------------------------------------------------------------------- writing

class UsageError(ConvertError):
    """A command-line mistake caught before any work (exit status 2)."""


def check_output(out_path, inputs):
    """Before any work: the output must not be an input, and must be writable. inputs is a
    list of (what, path). The output is written to a temporary file beside it and renamed
    over it, so an existing device, FIFO or directory is refused (renaming would replace the
    node itself)."""
    for what, path in inputs:
        same = os.path.abspath(out_path) == os.path.abspath(path)
        try:
            same = same or os.path.samefile(out_path, path)
        except OSError:
            pass
        if same:
            raise UsageError("output %s is the same file as the %s %s: refusing to overwrite "
                             "an input" % (out_path, what, path))
    if os.path.lexists(out_path) and not os.path.exists(out_path):
        raise ConvertError("output %s: dangling symbolic link" % out_path)
    if os.path.exists(out_path):
        st = os.stat(out_path)
        if stat.S_ISDIR(st.st_mode):
            raise ConvertError("output %s: Is a directory" % out_path)
        if not stat.S_ISREG(st.st_mode):
            raise ConvertError("output %s: not a regular file" % out_path)
    folder = os.path.dirname(os.path.realpath(out_path))
    if not os.path.isdir(folder):
        raise ConvertError("output %s: folder %s does not exist" % (out_path, folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConvertError("output %s: folder %s is not writable" % (out_path, folder))


def write_model(out_path, plan, merges, cfg, source, dtype):
    header, offset, sizes = collections.OrderedDict(), 0, []
    meta = collections.OrderedDict()
    meta["format"] = "libclipn"
    meta["format_version"] = str(FORMAT_VERSION)
    meta["config"] = json.dumps(cfg)
    meta["source"] = source
    if dtype == "I8":
        meta["int8_group"] = str(INT8_GROUP)
        # the I8 weights and token embeddings, each followed by its scales; the rest F16
        plan = [e for name, parts in plan
                for e in ([(name, parts), (name + "_scale", ("scale", parts))]
                          if INT8_WEIGHT.search(name) else [(name, parts)])]
    header["__metadata__"] = meta
    for name, parts in plan + [("tokenizer.bpe_merges", None)]:
        offset += -offset % ALIGN
        if parts is None:
            shape, dt, nbytes = [len(merges)], "U8", len(merges)
        elif isinstance(parts, tuple):  # the scales of the I8 weight before it
            rows, cols = part_shape(parts[1])
            shape, dt = [rows, -(-cols // INT8_GROUP)], "F32"
            nbytes = shape[0] * shape[1] * 4
        else:
            shape = part_shape(parts)
            numel = 1
            for d in shape:
                numel *= d
            dt = dtype if dtype != "I8" else ("I8" if INT8_WEIGHT.search(name) else "F16")
            nbytes = numel * ITEMSIZE[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        sizes.append(nbytes)
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % ALIGN)  # data section starts 64-aligned

    # a symlink is followed: the file it points to is replaced, the link kept
    out_path = os.path.realpath(out_path)
    out_dir = os.path.dirname(out_path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out_path) + ".",
                               suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            written, pending_scales = 0, None
            for (name, parts), nbytes in zip(plan, sizes):
                f.write(b"\0" * (-written % ALIGN))
                written += -written % ALIGN
                n = 0
                if isinstance(parts, tuple):  # scales computed with the weight just written
                    f.write(pending_scales)
                    n = len(pending_scales)
                elif header[name]["dtype"] == "I8":
                    rows, cols = header[name]["shape"]
                    n, pending_scales = quantize_stream(
                        (convert(chunk, p.dtype, "F32") for p in parts for chunk in p.chunks()),
                        rows, cols, f.write)
                else:
                    for p in parts:
                        for chunk in p.chunks():
                            data = convert(chunk, p.dtype, header[name]["dtype"])
                            f.write(data)
                            n += len(data)
                if n != nbytes:
                    raise ConvertError("internal: %s wrote %d bytes, planned %d"
                                       % (name, n, nbytes))
                written += n
            f.write(b"\0" * (-written % ALIGN))
            f.write(merges)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out_path)
        try:  # make the rename durable
            dfd = os.open(out_dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return 8 + len(text) + offset


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="clipn_convert.py",
        description="Convert a CLIPN, open_clip or Hugging Face CLIP checkpoint to a libclipn "
                    "model file (docs/model-format.md).")
    ap.add_argument("input", help="torch.save zip (.pt) or safetensors file")
    ap.add_argument("output", help="libclipn model file to write")
    ap.add_argument("--quickgelu", action="store_true",
                    help="QuickGELU activation (OpenAI-trained weights); default exact GELU")
    ap.add_argument("--dtype", choices=sorted(OUT_DTYPES), default="f32",
                    help="weight dtype in the output (default f32); int8: the blocks' linear "
                         "weights and the token embeddings as int8 with per-64 scales, the "
                         "rest f16 (about a quarter of f32; docs/model-format.md)")
    ap.add_argument("--vocab", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "bpe_simple_vocab_16e6.txt.gz"),
                    help="BPE vocab file (default: the copy next to this script)")
    ap.add_argument("--heads-vision", type=int, default=0,
                    help="image tower attention heads (default width // 64)")
    ap.add_argument("--heads-text", type=int, default=0,
                    help="text tower attention heads (default width // 64)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no messages on success")
    args = ap.parse_args(argv)

    def warn(msg):
        if not args.quiet:
            print("clipn_convert: " + msg, file=sys.stderr)

    try:
        if args.heads_vision < 0 or args.heads_text < 0:
            raise ConvertError("head counts must be positive")
        check_output(args.output, [("input", args.input), ("vocab", args.vocab)])
        sd, source = load_state_dict(args.input, warn)
        if source == "hf_clip":
            warn("Hugging Face CLIP: the activation is in config.json, not in the weights; "
                 "using %s (pass --quickgelu if its hidden_act is \"quick_gelu\", as for "
                 "OpenAI-trained models)" % ("quickgelu" if args.quickgelu else "gelu"))
        cfg = infer_config(sd, args)
        plan = check_tensors(sd, cfg)
        wanted = {name for name, _ in plan}
        dropped = [k for k in sd if k not in wanted]
        if dropped:
            warn("dropping %d tensors not used at inference: %s%s"
                 % (len(dropped), ", ".join(dropped[:5]), ", ..." if len(dropped) > 5 else ""))
        merges = read_merges(args.vocab, cfg["vocab_size"])
        size = write_model(args.output, plan, merges, cfg, source, OUT_DTYPES[args.dtype])
    except UsageError as e:
        print("clipn_convert: error: %s" % e, file=sys.stderr)
        return 2
    except ConvertError as e:
        print("clipn_convert: error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("clipn_convert: error: %s" % e, file=sys.stderr)
        return 1
    towers = ("yes+no towers, %d prompts" % cfg["n_prompt_no"] if cfg["has_no_tower"]
              else "no _no tower")
    warn("wrote %s: %s, %s, %d tensors, %.1f MB (%s; vision %d layers x %d, patch %d, "
         "image %d; text %d layers x %d; %s)"
         % (args.output, source, args.dtype, len(plan) + 1, size / 1e6, cfg["activation"],
            cfg["vision_layers"], cfg["vision_width"], cfg["patch_size"], cfg["image_size"],
            cfg["text_layers"], cfg["text_width"], towers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
