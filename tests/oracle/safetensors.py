"""safetensors oracle: an independent reader and writer (struct + json +
numpy, nothing shared with glassbox's C code).

Build time (`safetensors.py OUT.txt`, run by make):
  - expected values of the real stories260k checkpoint (written by the
    safetensors library itself), read here with numpy.frombuffer;
  - round-trip inputs and torch's own .half() / .bfloat16() roundings of them;
  - files written by this script's writer for the C reader:
    OUT_DIR/safetensors_files/{mixed,unaligned}.safetensors and a sharded
    checkpoint in OUT_DIR/safetensors_files/sharded/.
Test time (`safetensors.py --dump FILE OUT.txt`, run by test_safetensors.c on
files glassbox wrote): checks the layout rules of the reference
implementation (header padded with spaces to 8 bytes, __metadata__ first,
tensors by descending dtype alignment then name, contiguous offsets, exact
file size), checks that this script's writer produces the very same bytes,
and dumps every tensor (stored dtype) and metadata value (as uint8 bytes
under meta.KEY) in common.py's format.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

from common import Oracle

# The reference's Dtype enum in declaration order (increasing alignment); its
# writer sorts tensors by this position, descending, then by name.
RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
        "I32", "U32", "F32", "F64", "I64", "U64"]
NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16,
         "U16": np.uint16, "F16": np.float16, "BF16": np.int16, "I32": np.int32,
         "U32": np.uint32, "F32": np.float32, "F64": np.float64, "I64": np.int64,
         "U64": np.uint64}
TORCH = {torch.bool: "BOOL", torch.uint8: "U8", torch.float16: "F16",
         torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32",
         torch.int64: "I64", torch.float64: "F64"}


def fail(msg):
    sys.exit("safetensors.py: " + msg)


def read_file(path):
    """(metadata dict or None, [(name, dtype, shape, begin, end)] in header
    order, {name: torch tensor in its stored dtype}, header length)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    pairs = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=list)
    data = buf[8 + n:]
    meta, entries, tensors = None, [], {}
    for name, info in pairs:
        if name == "__metadata__":
            meta = dict(info)
            continue
        info = dict(info)
        b, e = info["data_offsets"]
        dt, shape = info["dtype"], info["shape"]
        arr = np.frombuffer(data[b:e], dtype=NUMPY[dt]).reshape(shape)
        t = torch.from_numpy(arr.copy())
        if dt == "BF16":
            t = t.view(torch.bfloat16)
        entries.append((name, dt, shape, b, e))
        tensors[name] = t
    return meta, entries, tensors, n


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def serialize(tensors, metadata=None, pad=True):
    """The reference's layout: tensors {name: torch tensor} sorted by dtype
    alignment (descending) then name, header padded with spaces to 8 bytes."""
    order = sorted(tensors, key=lambda k: (-RANK.index(TORCH[tensors[k].dtype]), k))
    header, blobs, at = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": TORCH[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_file(path, tensors, metadata=None, pad=True):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata, pad))


def dump(path, out):
    with open(path, "rb") as f:
        raw = f.read()
    meta, entries, tensors, n = read_file(path)
    if n % 8:
        fail(f"{path}: header length {n} is not a multiple of 8")
    text = raw[8:8 + n]
    if text.rstrip(b" ") != text.rstrip() or not text.rstrip().endswith(b"}"):
        fail(f"{path}: header is not padded with spaces")
    keys = [k for k, _ in json.loads(text, object_pairs_hook=list)]
    if meta is not None and keys[0] != "__metadata__":
        fail(f"{path}: __metadata__ is not first")
    names = [e[0] for e in entries]
    dtypes = {e[0]: e[1] for e in entries}
    want = sorted(names, key=lambda k: (-RANK.index(dtypes[k]), k))
    if names != want:
        fail(f"{path}: tensors in order {names}, the reference's is {want}")
    at = 0
    for name, dt, shape, b, e in entries:
        if b != at:
            fail(f"{path}: {name} starts at {b}, expected {at}")
        at = e
    if len(raw) != 8 + n + at:
        fail(f"{path}: file is {len(raw)} bytes, header says {8 + n + at}")
    if serialize(tensors, meta) != raw:
        fail(f"{path}: bytes differ from this script's writer")
    o = Oracle(out)
    for name, t in tensors.items():
        o.put(name, t)
    for k, v in (meta or {}).items():
        o.put("meta." + k, torch.tensor(list(v.encode("utf-8")), dtype=torch.uint8))
    o.save()


# ---- build-time oracle ------------------------------------------------------

STORIES_VALUES = [
    "model.embed_tokens.weight",
    "model.norm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.2.input_layernorm.weight",
    "model.layers.4.mlp.down_proj.weight",
]


def shared_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("GB_SHARED_DIR", os.path.join(here, "..", "..", "..", "shared"))


def roundtrip_input():
    """f32 values with the cases where rounding to f16 / bf16 is delicate."""
    torch.manual_seed(0)
    special = [
        0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, 1e-8, 5.960464477539063e-08, 2.0 ** -25,
        1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 3.4028234663852886e38,
        float("inf"), float("-inf"), float("nan"), 1e-40, -6.1e-5, 3.14159265, 1e5,
    ]
    x = torch.randn(42) * 3
    x[: len(special)] = torch.tensor(special, dtype=torch.float32)
    return x.reshape(6, 7)


def build(out_path):
    o = Oracle(out_path)
    x = roundtrip_input()
    o.put("rt.x", x)
    o.put("rt.x_f16", x.half())
    o.put("rt.x_bf16", x.bfloat16())
    ids = torch.tensor([[0, 1, -5, 2 ** 62 + 1, 50256], [7, 8, 9, -(2 ** 40), 3]], dtype=torch.int64)
    i32 = torch.tensor([-2 ** 31, 2 ** 31 - 1, 0, 12345], dtype=torch.int32)
    u8 = torch.tensor([0, 1, 127, 255], dtype=torch.uint8)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    o.put("rt.ids", ids)
    o.put("rt.i32", i32)
    o.put("rt.u8", u8)
    o.put("rt.mask", mask)

    # Files for the C reader, written by serialize() above.
    files = os.path.join(os.path.dirname(os.path.abspath(out_path)), "safetensors_files")
    os.makedirs(os.path.join(files, "sharded"), exist_ok=True)
    mixed = {
        "a.f32": x, "a.f16": x.half(), "a.bf16": x.bfloat16(), "b.i64": ids, "b.i32": i32,
        "b.u8": u8, "b.bool": mask, "c.empty": torch.zeros(0, 3), "c.scalar": torch.tensor(2.5),
        "c.t": x.t(),  # stored contiguous (the writer copies)
    }
    write_file(os.path.join(files, "mixed.safetensors"), mixed, {"format": "pt", "note": "written by the oracle"})
    # No padding: the f32 data starts 4 bytes off any 8-byte boundary, and
    # the header length is odd so f16 data is misaligned too.
    unaligned = {"u": x[:1, :5].contiguous(), "v": x[1].half()}
    raw = serialize(unaligned, None, pad=False)
    (n,) = struct.unpack("<Q", raw[:8])
    while (8 + n) % 2 == 0:  # one more space of padding until the data starts at an odd offset
        raw = struct.pack("<Q", n + 1) + raw[8:8 + n] + b" " + raw[8 + n:]
        (n,) = struct.unpack("<Q", raw[:8])
    with open(os.path.join(files, "unaligned.safetensors"), "wb") as f:
        f.write(raw)
    o.put("unaligned.header_len", torch.tensor(n, dtype=torch.int64))

    # A sharded checkpoint, the boundary in the middle of layer 0.
    torch.manual_seed(1)
    w0, b0, w1 = torch.randn(4, 3), torch.randn(4), torch.randn(2, 4)
    shard1 = {"layers.0.w": w0.bfloat16(), "embed": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    shard2 = {"layers.0.b": b0.bfloat16(), "layers.1.w": w1.bfloat16()}
    names = {"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2}
    weight_map = {}
    for fname, ts in names.items():
        write_file(os.path.join(files, "sharded", fname), ts, {"format": "pt", "shard": fname})
        weight_map.update({k: fname for k in ts})
    index = {"metadata": {"total_size": 0}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(files, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    for fname, ts in names.items():
        for k, t in ts.items():
            o.put("sharded." + k, t)

    path = os.path.join(shared_dir(), "models", "stories260k", "model.safetensors")
    if os.path.exists(path):
        meta, entries, tensors, _ = read_file(path)
        o.put("stories.count", torch.tensor(len(entries), dtype=torch.int64))
        for name, dt, shape, b, e in entries:
            o.put("stories.shape." + name, torch.tensor(shape, dtype=torch.int64))
        for name in STORIES_VALUES:
            o.put("stories.value." + name, tensors[name])
    o.save()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--dump":
        dump(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        build(sys.argv[1])
    else:
        fail("usage: safetensors.py OUT.txt | safetensors.py --dump FILE OUT.txt")
