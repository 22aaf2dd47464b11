"""Tests of weights_tools/clipn_convert.py. Standard library only (no torch): the expected
tensor checksums come from the manifests torch wrote next to the fixtures
(tests/fixtures/ckpt/regen.sh). Run from the repo root:
    python3 -m unittest discover -s weights_tools/tests -t . -v
"""
import gzip
import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERTER = os.path.join(REPO, "weights_tools", "clipn_convert.py")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "ckpt")
VOCAB = os.path.join(REPO, "weights_tools", "bpe_simple_vocab_16e6.txt.gz")
sys.path.insert(0, os.path.join(REPO, "weights_tools"))
import clipn_convert  # noqa: E402

CONFIG_FIELDS = {
    "format_version": int, "embed_dim": int, "image_size": int, "patch_size": int,
    "vision_width": int, "vision_layers": int, "vision_heads": int, "vision_mlp_width": int,
    "context_length": int, "vocab_size": int, "text_width": int, "text_layers": int,
    "text_heads": int, "text_mlp_width": int, "activation": str, "ln_eps": float,
    "pad_id": int, "sot_id": int, "eot_id": int, "pooling": str, "has_no_tower": bool,
    "has_prompt_no": bool, "n_prompt_no": int, "image_mean": list, "image_std": list,
}
ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1}


def run_converter(*args):
    """Runs the converter exactly as users do: isolated, no site packages."""
    p = subprocess.run([sys.executable, "-I", "-S", CONVERTER] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def read_model(path):
    """(header, data section bytes) of a libclipn model file, checking the layout rules."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return header, blob[8 + n:], n


def load_manifest(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


class Tmp(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="clipn_convert_test_")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, name):
        return os.path.join(self.dir, name)


class RoundTrip(Tmp):
    """Converted files hold exactly the numbers torch wrote, in the documented layout."""

    def check_layout(self, path):
        header, data, n = read_model(path)
        self.assertEqual((8 + n) % 64, 0, "data section not 64-aligned")
        meta = header.pop("__metadata__")
        self.assertEqual(meta["format"], "libclipn")
        self.assertEqual(meta["format_version"], "1")
        self.assertIn(meta["source"], ("clipn_checkpoint", "open_clip", "hf_clip"))
        for v in meta.values():
            self.assertIsInstance(v, str)
        cfg = json.loads(meta["config"])
        for field, typ in CONFIG_FIELDS.items():
            self.assertIn(field, cfg)
            self.assertIsInstance(cfg[field], typ, field)
        self.assertEqual(set(cfg), set(CONFIG_FIELDS))
        end = 0
        for name, e in header.items():  # file order: increasing, aligned, no overlap
            begin, stop = e["data_offsets"]
            self.assertEqual(begin % 64, 0, name)
            self.assertGreaterEqual(begin, end, name)
            numel = 1
            for d in e["shape"]:
                numel *= d
            self.assertEqual(stop - begin, numel * ITEMSIZE[e["dtype"]], name)
            end = stop
        self.assertLessEqual(end, len(data))
        return header, data, cfg, meta

    def check_fixture(self, fixture, manifest, dtype, source):
        out = self.path("out.clipn")
        rc, err = run_converter(os.path.join(FIXTURES, fixture), out, "--dtype", dtype)
        self.assertEqual(rc, 0, err)
        header, data, cfg, meta = self.check_layout(out)
        self.assertEqual(meta["source"], source)
        want = load_manifest(manifest)
        for k, v in want["config"].items():
            if k in cfg:
                self.assertEqual(cfg[k], v, k)
        names = [k for k in header if k != "tokenizer.bpe_merges"]
        self.assertEqual(sorted(names), sorted(want["tensors"]))
        for name in names:
            e, w = header[name], want["tensors"][name]
            self.assertEqual(e["dtype"], dtype.upper(), name)
            self.assertEqual(e["shape"], w["shape"], name)
            b, s = e["data_offsets"]
            self.assertEqual(hashlib.sha256(data[b:s]).hexdigest(), w[dtype],
                             "%s (%s) differs from torch's bytes" % (name, dtype))
        self.assertEqual(list(header)[-1], "tokenizer.bpe_merges")
        return header, data, cfg

    def test_clipn_checkpoint_all_dtypes(self):
        for dtype in ("f32", "f16", "bf16"):
            with self.subTest(dtype=dtype):
                h, _, cfg = self.check_fixture("tiny_clipn.pt", "tiny_clipn.json", dtype,
                                               "clipn_checkpoint")
                self.assertTrue(cfg["has_no_tower"])
                self.assertTrue(cfg["has_prompt_no"])
                self.assertEqual(cfg["n_prompt_no"], 4)
                self.assertEqual(h["prompt_no"]["shape"], [4, 77, 32])
                self.assertEqual(cfg["activation"], "gelu")

    def test_int8(self):
        """--dtype int8: the blocks' linear weights and the token embeddings I8 + F32 scales
        per row and 64 columns, dequantizing to the f32 values within half a step; every
        other tensor F16."""
        f32_out, out = self.path("f32.clipn"), self.path("int8.clipn")
        src = os.path.join(FIXTURES, "tiny_clipn.pt")
        self.assertEqual(run_converter(src, f32_out)[0], 0)
        rc, err = run_converter(src, out, "--dtype", "int8")
        self.assertEqual(rc, 0, err)
        header, data, cfg, meta = self.check_layout(out)
        ref, ref_data, _ = read_model(f32_out)
        self.assertEqual(meta["int8_group"], "64")
        n_i8 = 0
        for name, e in header.items():
            if name == "tokenizer.bpe_merges" or name.endswith("_scale"):
                continue
            if clipn_convert.INT8_WEIGHT.search(name):
                n_i8 += 1
                self.assertEqual(e["dtype"], "I8", name)
                rows, cols = e["shape"]
                sc = header[name + "_scale"]
                self.assertEqual((sc["dtype"], sc["shape"]), ("F32", [rows, -(-cols // 64)]))
                b, s_ = e["data_offsets"]
                q = struct.unpack("<%db" % (rows * cols), data[b:s_])
                b, s_ = sc["data_offsets"]
                scales = struct.unpack("<%df" % (len(q) // cols * -(-cols // 64)), data[b:s_])
                b, s_ = ref[name]["data_offsets"]
                w = struct.unpack("<%df" % len(q), ref_data[b:s_])
                for i, (qi, wi) in enumerate(zip(q, w)):
                    st = scales[(i // cols) * -(-cols // 64) + (i % cols) // 64]
                    self.assertLessEqual(abs(qi), 127)
                    self.assertLessEqual(abs(qi * st - wi), 0.5001 * st + 1e-12, name)
            else:
                self.assertEqual(e["dtype"], "F16", name)
        self.assertEqual(n_i8, 4 * 2 * 3 + 2)  # 4 linears x 2 blocks x 3 towers, 2 embeddings
        for name in ("token_embedding.weight", "token_embedding_no.weight"):
            self.assertEqual(header[name]["dtype"], "I8")
        self.assertLess(os.path.getsize(out), 0.35 * os.path.getsize(f32_out))

    def test_noprompt_bf16_storage_noncontiguous(self):
        for dtype in ("f32", "bf16"):
            with self.subTest(dtype=dtype):
                h, _, cfg = self.check_fixture("tiny_noprompt.pt", "tiny_noprompt.json", dtype,
                                               "clipn_checkpoint")
                self.assertTrue(cfg["has_no_tower"])
                self.assertFalse(cfg["has_prompt_no"])
                self.assertEqual(cfg["n_prompt_no"], 0)
                self.assertNotIn("prompt_no", h)

    def test_openclip_f16_storage(self):
        for dtype in ("f32", "f16", "bf16"):
            with self.subTest(dtype=dtype):
                h, _, cfg = self.check_fixture("tiny_openclip.pt", "tiny_openclip.json", dtype,
                                               "open_clip")
                self.assertFalse(cfg["has_no_tower"])
                self.assertNotIn("token_embedding_no.weight", h)

    def test_hf_safetensors(self):
        for dtype in ("f32", "bf16"):
            with self.subTest(dtype=dtype):
                self.check_fixture("tiny_hf.safetensors", "tiny_hf.json", dtype, "hf_clip")

    def test_config_and_merges(self):
        out = self.path("out.clipn")
        rc, err = run_converter(os.path.join(FIXTURES, "tiny_clipn.pt"), out, "--quickgelu",
                                "--heads-vision", "2", "--heads-text", "4")
        self.assertEqual(rc, 0, err)
        header, data, cfg, meta = self.check_layout(out)
        self.assertEqual(cfg["activation"], "quickgelu")
        self.assertEqual((cfg["vision_heads"], cfg["text_heads"]), (2, 4))
        self.assertEqual((cfg["image_size"], cfg["patch_size"], cfg["vision_layers"]),
                         (32, 8, 2))
        self.assertEqual((cfg["vision_mlp_width"], cfg["text_mlp_width"]), (128, 128))
        self.assertEqual((cfg["context_length"], cfg["vocab_size"], cfg["embed_dim"]),
                         (77, 600, 16))
        self.assertEqual(cfg["ln_eps"], 1e-5)
        self.assertEqual(cfg["pooling"], "argmax")
        # Small vocab: the special tokens are its last two ids, the merges fill the rest.
        self.assertEqual((cfg["pad_id"], cfg["sot_id"], cfg["eot_id"]), (0, 598, 599))
        self.assertEqual(cfg["image_mean"], [0.48145466, 0.4578275, 0.40821073])
        self.assertEqual(cfg["image_std"], [0.26862954, 0.26130258, 0.27577711])
        e = header["tokenizer.bpe_merges"]
        self.assertEqual(e["dtype"], "U8")
        merges = data[e["data_offsets"][0]:e["data_offsets"][1]].decode("utf-8")
        lines = gzip.open(VOCAB).read().decode("utf-8").split("\n")
        self.assertEqual(merges, "".join(l + "\n" for l in lines[1:1 + 600 - 514]))

    def test_official_vocab_merges(self):
        merges = clipn_convert.read_merges(VOCAB, 49408).decode("utf-8")
        lines = merges.split("\n")
        self.assertEqual(lines[-1], "")  # every line ends in "\n"
        self.assertEqual(len(lines) - 1, 48894)
        self.assertEqual(lines[0], "i n")
        self.assertEqual(lines[48893], "jeky ll</w>")
        self.assertNotIn("#version", merges)

    def test_default_heads_follow_head_width_64(self):
        args = type("A", (), {"heads_vision": 0, "heads_text": 0, "quickgelu": False})
        sd, _ = clipn_convert.load_state_dict(os.path.join(FIXTURES, "tiny_clipn.pt"),
                                              lambda m: None)
        cfg = clipn_convert.infer_config(sd, args)
        self.assertEqual((cfg["vision_heads"], cfg["text_heads"]), (1, 1))  # width 32

    def test_reconvert_own_output_is_identical(self):
        # A libclipn file is safetensors with open_clip names: converting it again is a no-op.
        a, b = self.path("a.clipn"), self.path("b.clipn")
        self.assertEqual(run_converter(os.path.join(FIXTURES, "tiny_clipn.pt"), a)[0], 0)
        rc, err = run_converter(a, b)
        self.assertEqual(rc, 0, err)
        ha, da, _ = read_model(a)
        hb, db, _ = read_model(b)
        ma, mb = ha.pop("__metadata__"), hb.pop("__metadata__")
        self.assertEqual(ma["config"], mb["config"])
        self.assertEqual(ha, hb)
        self.assertEqual(da, db)

    def test_existing_output_replaced_atomically(self):
        out = self.path("out.clipn")
        with open(out, "w") as f:
            f.write("old")
        self.assertEqual(run_converter(os.path.join(FIXTURES, "tiny_clipn.pt"), out)[0], 0)
        self.assertEqual(sorted(os.listdir(self.dir)), ["out.clipn"])  # no temp file left
        read_model(out)


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


class OutputSafety(Tmp):
    """The output never replaces an input, a device or a FIFO; a failed write keeps the old
    file and leaves no temporary behind."""

    SRC = os.path.join(FIXTURES, "tiny_clipn.pt")

    def convert_ok(self, out):
        rc, err = run_converter(self.SRC, out)
        self.assertEqual(rc, 0, err)

    def test_output_is_the_input(self):
        src = self.path("in.clipn")
        self.convert_ok(src)
        before = slurp(src)
        for out in (src, os.path.join(self.dir, ".", "in.clipn")):
            rc, err = run_converter(src, out)
            self.assertEqual(rc, 2, err)
            self.assertIn("same file as the input", err)
        os.symlink("in.clipn", self.path("link.clipn"))
        os.link(src, self.path("hard.clipn"))
        for out in ("link.clipn", "hard.clipn"):
            rc, err = run_converter(src, self.path(out))
            self.assertEqual(rc, 2, err)
        self.assertEqual(slurp(src), before)

    def test_output_is_the_vocab(self):
        vocab = self.path("vocab.txt.gz")
        shutil.copy(VOCAB, vocab)
        rc, err = run_converter(self.SRC, vocab, "--vocab", vocab)
        self.assertEqual(rc, 2, err)
        self.assertEqual(slurp(vocab), slurp(VOCAB))

    def test_output_not_a_regular_file(self):
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        rc, err = run_converter(self.SRC, fifo)
        self.assertEqual(rc, 1, err)
        self.assertIn("not a regular file", err)
        self.assertTrue(os.path.exists(fifo) and not os.path.isfile(fifo))
        rc, err = run_converter(self.SRC, self.dir)
        self.assertEqual(rc, 1, err)
        self.assertIn("Is a directory", err)
        rc, err = run_converter(self.SRC, self.path("missing/out.clipn"))
        self.assertEqual(rc, 1, err)
        self.assertIn("does not exist", err)

    def test_full_disk_keeps_the_old_file(self):
        # RLIMIT_FSIZE: writes fail with EFBIG (Python ignores SIGXFSZ)
        import resource
        out = self.path("out.clipn")
        with open(out, "w") as f:
            f.write("old")
        p = subprocess.run([sys.executable, "-I", "-S", CONVERTER, self.SRC, out],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                 (4096, 4096)))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"File too large", p.stderr)
        self.assertEqual(slurp(out), b"old")
        self.assertEqual(sorted(os.listdir(self.dir)), ["out.clipn"])

    def test_symlink_output_replaces_its_target(self):
        target = self.path("real.clipn")
        with open(target, "w") as f:
            f.write("old")
        os.symlink("real.clipn", self.path("link.clipn"))
        self.convert_ok(self.path("link.clipn"))
        self.assertTrue(os.path.islink(self.path("link.clipn")))
        read_model(target)


class DtypeConversion(unittest.TestCase):
    """Edge cases of the rounding that the random fixtures rarely hit."""

    def bf16(self, bits):
        out = clipn_convert.f32_to_bf16(struct.pack("<I", bits))
        return struct.unpack("<H", out)[0]

    def test_bf16_round_to_nearest_even(self):
        cases = {0x3F800000: 0x3F80, 0x3F808000: 0x3F80, 0x3F818000: 0x3F82,
                 0x3F808001: 0x3F81, 0x3F807FFF: 0x3F80, 0xBF808001: 0xBF81,
                 0x7F800000: 0x7F80, 0xFF800000: 0xFF80, 0x7F7FFFFF: 0x7F80,
                 0x00000001: 0x0000, 0x80000000: 0x8000, 0xFFFFFFFF: 0x7FC0,
                 0x7FC00000: 0x7FC0, 0x7F800001: 0x7FC0}
        for bits, want in cases.items():
            self.assertEqual(self.bf16(bits), want, hex(bits))

    def test_bf16_many_lanes_and_nan_chunk(self):
        words = [0x3F808000 + i for i in range(1000)] + [0x7F800001] + [0x40490FDB] * 3
        data = struct.pack("<%dI" % len(words), *words)
        got = struct.unpack("<%dH" % len(words), clipn_convert.f32_to_bf16(data))
        self.assertEqual(list(got), [clipn_convert._bf16_one(w) for w in words])
        self.assertEqual(got[-1], 0x4049)

    def test_f16_overflow_is_inf(self):
        data = struct.pack("<4f", 1.0, 65504.0, 70000.0, -1e9)
        out = struct.unpack("<4H", clipn_convert.f32_to_f16(data))
        self.assertEqual(out, (0x3C00, 0x7BFF, 0x7C00, 0xFC00))

    def test_bf16_to_f32_exact(self):
        self.assertEqual(clipn_convert.to_f32(struct.pack("<H", 0x3F80), "BF16"),
                         struct.pack("<f", 1.0))


# ----------------------------------------------------------------------------- hostile inputs

def op_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_str(text):
    b = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def op_int(n):
    return b"J" + struct.pack("<i", n)


PROTO, MARK, TUPLE, TUPLE1, REDUCE, STOP = b"\x80\x02", b"(", b"t", b"\x85", b"R", b"."
EMPTY_DICT, SETITEM, BINPERSID, FALSE, EMPTY_TUPLE = b"}", b"s", b"Q", b"\x89", b")"


def op_storage(key, numel, stype="FloatStorage"):
    return (MARK + op_str("storage") + op_global("torch", stype) + op_str(key) + op_str("cpu")
            + op_int(numel) + TUPLE + BINPERSID)


def op_tuple(values):
    return MARK + b"".join(op_int(v) for v in values) + TUPLE


def op_tensor_args(storage, size, offset=0, stride=1):
    """(storage, offset, size, stride, False, OrderedDict()) as torch pickles them."""
    size = size if isinstance(size, tuple) else (size,)
    stride = stride if isinstance(stride, tuple) else (stride,)
    return (MARK + storage + op_int(offset) + op_tuple(size) + op_tuple(stride) + FALSE
            + op_global("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE)


def op_tensor(storage, size, offset=0, stride=1):
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    return (op_global("torch._utils", "_rebuild_tensor_v2")
            + op_tensor_args(storage, size, offset, stride) + REDUCE)


def op_dict(items):
    out = PROTO + EMPTY_DICT
    for k, v in items:
        out += op_str(k) + v + SETITEM
    return out + STOP


def write_torch_zip(path, pkl, members=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
        for name, data in (members or {}).items():
            z.writestr(name, data)


class Hostile(Tmp):
    """Each input must be refused with exit 1, a message naming the problem, nothing
    executed (the canary file stays absent) and no output written."""

    def setUp(self):
        super().setUp()
        self.canary = self.path("canary")
        self.cmd = "touch " + self.canary

    def refuse(self, pkl=None, members=None, expect="", path=None):
        if path is None:
            path = self.path("evil.pt")
            write_torch_zip(path, pkl, members)
        out = self.path("out.clipn")
        rc, err = run_converter(path, out)
        self.assertEqual(rc, 1, err)
        self.assertIn(expect, err)
        self.assertNotIn("Traceback", err)
        self.assertFalse(os.path.exists(self.canary), "hostile code ran")
        self.assertFalse(os.path.exists(out), "output written")
        self.assertEqual([f for f in os.listdir(self.dir) if f.endswith(".tmp")], [])
        return err

    def test_handmade_pickle_is_valid(self):
        # The builder makes pickles the converter accepts: the hostile variants below are
        # refused for their hostile part, not for a broken pickle.
        sd = EMPTY_DICT + op_str("visual.ln_pre.weight") + op_tensor(op_storage("0", 4), 4)
        pkl = op_dict([("epoch", op_int(10)), ("state_dict", sd + SETITEM)])
        self.refuse(pkl, {"archive/data/0": b"\0" * 16},
                    expect="missing tensor visual.conv1.weight")

    def test_canary_would_fire(self):
        # The payloads are real: plain pickle.loads runs them (the canary proves it).
        pickle.loads(PROTO + op_global("os", "system") + op_str(self.cmd) + TUPLE1 + REDUCE
                     + STOP)
        self.assertTrue(os.path.exists(self.canary))

    def test_os_system(self):
        pkl = PROTO + op_global("os", "system") + op_str(self.cmd) + TUPLE1 + REDUCE + STOP
        self.refuse(pkl, expect="refusing to unpickle os.system")

    def test_os_system_stack_global(self):
        pkl = (b"\x80\x04" + op_str("os") + op_str("system") + b"\x93" + op_str(self.cmd)
               + TUPLE1 + REDUCE + STOP)
        self.refuse(pkl, expect="refusing to unpickle os.system")

    def test_posix_system(self):
        pkl = PROTO + op_global("posix", "system") + op_str(self.cmd) + TUPLE1 + REDUCE + STOP
        self.refuse(pkl, expect="refusing to unpickle posix.system")

    def test_builtins_eval(self):
        code = "__import__('os').system(%r)" % self.cmd
        pkl = PROTO + op_global("builtins", "eval") + op_str(code) + TUPLE1 + REDUCE + STOP
        self.refuse(pkl, expect="refusing to unpickle builtins.eval")

    def test_builtins_exec(self):
        code = "import os; os.system(%r)" % self.cmd
        pkl = PROTO + op_global("builtins", "exec") + op_str(code) + TUPLE1 + REDUCE + STOP
        self.refuse(pkl, expect="refusing to unpickle builtins.exec")

    def test_subprocess(self):
        pkl = (PROTO + op_global("subprocess", "getoutput") + op_str(self.cmd) + TUPLE1
               + REDUCE + STOP)
        self.refuse(pkl, expect="refusing to unpickle subprocess.getoutput")

    def test_nested_reduce_inside_allowed_structure(self):
        evil = op_global("os", "system") + op_str(self.cmd) + TUPLE1 + REDUCE
        inner = (op_global("collections", "OrderedDict") + MARK + MARK + op_str("x") + evil
                 + TUPLE + TUPLE1 + TUPLE1 + REDUCE)  # OrderedDict(((x, os.system(..)),))
        pkl = op_dict([("epoch", op_int(1)), ("state_dict", inner)])
        self.refuse(pkl, expect="refusing to unpickle os.system")

    def test_globals_outside_the_allow_list(self):
        for module, name in (("numpy.core.multiarray", "_reconstruct"),
                             ("torch._utils", "_rebuild_device_tensor_from_numpy"),
                             ("torch.serialization", "_load_from_bytes"),
                             ("torch.nn.modules.linear", "Linear"),
                             ("__builtin__", "getattr")):
            with self.subTest(name=name):
                pkl = PROTO + op_global(module, name) + EMPTY_TUPLE + REDUCE + STOP
                self.refuse(pkl, expect="refusing to unpickle %s.%s" % (module, name))

    def test_rebuild_tensor_with_a_non_storage(self):
        pkl = op_dict([("t", op_global("torch._utils", "_rebuild_tensor_v2") + MARK
                        + op_str("not a storage") + op_int(0) + MARK + op_int(1) + TUPLE
                        + MARK + op_int(1) + TUPLE + TUPLE + REDUCE)])
        self.refuse(pkl, expect="not a storage")

    def test_build_cannot_retype_a_storage_stand_in(self):
        pkl = (PROTO + op_global("torch", "FloatStorage") + EMPTY_DICT + op_str("dtype")
               + op_str("F64") + SETITEM + b"b" + STOP)  # BUILD
        self.refuse(pkl, expect="unexpected pickle state for torch.FloatStorage")

    def test_persistent_id_outside_archive(self):
        for key in ("../../etc/passwd", "/etc/passwd", "0/../../x"):
            with self.subTest(key=key):
                pkl = op_dict([("t", op_tensor(op_storage(key, 4), 4))])
                self.refuse(pkl, {"archive/data/0": b"\0" * 16}, expect="not a plain name")

    def test_persistent_id_missing_member(self):
        pkl = op_dict([("t", op_tensor(op_storage("7", 4), 4))])
        self.refuse(pkl, {"archive/data/0": b"\0" * 16}, expect="not in the archive")

    def test_persistent_id_not_a_storage(self):
        pkl = op_dict([("t", MARK + op_str("module") + op_str("os") + TUPLE + BINPERSID)])
        self.refuse(pkl, expect="not a torch storage")

    def test_zip_member_with_dotdot_or_absolute(self):
        for name in ("archive/../evil", "/abs/evil", "../evil"):
            with self.subTest(name=name):
                pkl = op_dict([])
                self.refuse(pkl, {name: b"x"}, expect="absolute path or '..'")

    def test_storage_bigger_than_member(self):
        pkl = op_dict([("t", op_tensor(op_storage("0", 1000), 1000))])
        self.refuse(pkl, {"archive/data/0": b"\0" * 16},
                    expect="declares 4000 bytes but archive member archive/data/0 holds 16")

    def test_view_beyond_storage(self):
        pkl = op_dict([("t", op_tensor(op_storage("0", 4), 4, offset=1))])
        self.refuse(pkl, {"archive/data/0": b"\0" * 16}, expect="reaches beyond its storage")

    def test_view_bigger_than_storage(self):
        # A stride-0 view of one float could claim a 2^40-element tensor: refused.
        pkl = op_dict([("t", op_tensor(op_storage("0", 4), 1 << 30, stride=0))])
        self.refuse(pkl, {"archive/data/0": b"\0" * 16}, expect="more elements than its storage")

    def test_truncated_pickle(self):
        pkl = op_dict([("t", op_tensor(op_storage("0", 4), 4))])[:-20]
        self.refuse(pkl, {"archive/data/0": b"\0" * 16}, expect="malformed pickle")

    def test_zip_bomb_pickle(self):
        # 100 MB of data.pkl deflates to ~100 KB: refused from its directory entry, before
        # anything is inflated.
        path = self.path("bomb.pt")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("archive/data.pkl", b"\0" * (100 << 20))
            z.writestr("archive/version", "3\n")
        self.assertLess(os.path.getsize(path), 1 << 20)
        self.refuse(path=path, expect="too big for a checkpoint")

    def test_zip_bomb_storage(self):
        # A deflated storage member far larger than the tensor that uses it is read lazily:
        # refused for the missing tensors without inflating 32 MB.
        path = self.path("bomb2.pt")
        sd = EMPTY_DICT + op_str("visual.ln_pre.weight") + op_tensor(op_storage("0", 4), 4)
        pkl = op_dict([("state_dict", sd + SETITEM)])
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("archive/data.pkl", pkl)
            z.writestr("archive/version", "3\n")
            z.writestr("archive/data/0", b"\0" * (32 << 20))
        self.refuse(path=path, expect="missing tensor visual.conv1.weight")

    def test_deep_nesting(self):
        # 20000 nested lists: the unpickler does not recurse, but anything walking the
        # result might; either way a clean refusal, no RecursionError traceback.
        depth = 20000
        deep = b"]" * depth + b"a" * (depth - 1)
        self.refuse(op_dict([("state_dict", deep)]))
        deep_tuple = b"(" * depth + b"t" * depth
        self.refuse(op_dict([("state_dict", deep_tuple)]))

    def test_huge_long(self):
        # LONG4 with a 1 MB integer as a storage size, and a 2**100-element storage.
        big = b"\x8b" + struct.pack("<i", 1 << 20) + b"\x7f" * (1 << 20)
        storage = (MARK + op_str("storage") + op_global("torch", "FloatStorage") + op_str("0")
                   + op_str("cpu") + big + TUPLE + BINPERSID)
        self.refuse(op_dict([("t", op_tensor(storage, 4))]), {"archive/data/0": b"\0" * 16})
        storage = (MARK + op_str("storage") + op_global("torch", "FloatStorage") + op_str("0")
                   + op_str("cpu") + b"\x8a\x0e" + (1 << 100).to_bytes(14, "little")
                   + TUPLE + BINPERSID)
        self.refuse(op_dict([("t", op_tensor(storage, 4))]), {"archive/data/0": b"\0" * 16})

    def test_legacy_torch_save(self):
        path = self.path("legacy.pt")
        with open(path, "wb") as f:  # legacy files start with a pickled magic number
            f.write(PROTO + b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")
        self.refuse(path=path, expect="legacy")

    def test_not_a_checkpoint(self):
        path = self.path("junk.pt")
        with open(path, "wb") as f:
            f.write(b"hello world, not a model")
        self.refuse(path=path, expect="unknown format")

    def test_safetensors_offsets_out_of_file(self):
        path = self.path("bad.safetensors")
        h = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"\0" * 8)
        self.refuse(path=path, expect="bad data_offsets")


class TorchZipVariants(Tmp):
    """What torch 1.13 and 2.x write for dense tensors is read back exactly."""

    def load(self, pkl, members):
        path = self.path("ckpt.pt")
        write_torch_zip(path, pkl, members)
        return clipn_convert.read_torch_zip(path)

    def values(self, t):
        data = b"".join(t.chunks())
        return list(struct.unpack("<%df" % (len(data) // 4), data))

    def test_torch2_layout(self):
        members = {"archive/data/0": struct.pack("<4f", 1, 2, 3, 4),
                   "archive/byteorder": b"little", "archive/.data/serialization_id": b"1234"}
        obj = self.load(op_dict([("t", op_tensor(op_storage("0", 4), 4))]), members)
        self.assertEqual(self.values(obj["t"]), [1, 2, 3, 4])

    def test_big_endian_refused(self):
        with self.assertRaisesRegex(clipn_convert.ConvertError, "big-endian"):
            self.load(op_dict([]), {"archive/byteorder": b"big"})

    def test_two_pickles_refused(self):
        with self.assertRaisesRegex(clipn_convert.ConvertError, "expected one data.pkl"):
            self.load(op_dict([]), {"other/data.pkl": op_dict([])})

    def test_offset_and_strides(self):
        # A [2, 3] view at offset 1 with strides (1, 2) of a 7-float storage: column-major.
        members = {"archive/data/0": struct.pack("<7f", *range(7))}
        obj = self.load(op_dict([("t", op_tensor(op_storage("0", 7), (2, 3), 1, (1, 2)))]),
                        members)
        self.assertEqual(self.values(obj["t"]), [1, 3, 5, 2, 4, 6])

    def test_shared_storage(self):
        members = {"archive/data/0": struct.pack("<6f", *range(6))}
        pkl = op_dict([("a", op_tensor(op_storage("0", 6), 2)),
                       ("b", op_tensor(op_storage("0", 6), 3, offset=3))])
        obj = self.load(pkl, members)
        self.assertIs(obj["a"].storage, obj["b"].storage)
        self.assertEqual((self.values(obj["a"]), self.values(obj["b"])), ([0, 1], [3, 4, 5]))

    def test_half_and_bfloat16_storages(self):
        members = {"archive/data/0": struct.pack("<2e", 1.5, -2.0),
                   "archive/data/1": struct.pack("<2H", 0x3FC0, 0xC000)}
        pkl = op_dict([("h", op_tensor(op_storage("0", 2, "HalfStorage"), 2)),
                       ("b", op_tensor(op_storage("1", 2, "BFloat16Storage"), 2))])
        obj = self.load(pkl, members)
        for k in "hb":
            self.assertEqual(struct.unpack("<2f", clipn_convert.convert(
                b"".join(obj[k].chunks()), obj[k].dtype, "F32")), (1.5, -2.0))

    def test_parameter_rebuilds(self):
        members = {"archive/data/0": struct.pack("<2f", 5, 6)}
        param = (op_global("torch._utils", "_rebuild_parameter") + MARK
                 + op_tensor(op_storage("0", 2), 2) + b"\x88" + op_global(
                     "collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE + REDUCE)
        from_type = (op_global("torch._tensor", "_rebuild_from_type_v2") + MARK
                     + op_global("torch._utils", "_rebuild_tensor_v2")
                     + op_global("torch.nn.parameter", "Parameter")
                     + op_tensor_args(op_storage("0", 2), 2) + EMPTY_DICT + TUPLE + REDUCE)
        obj = self.load(op_dict([("p", param), ("q", from_type)]), members)
        self.assertEqual(self.values(obj["p"]), [5, 6])
        self.assertEqual(self.values(obj["q"]), [5, 6])


class WrongTensors(Tmp):
    """Missing or mis-shaped tensors are named with expected and found shapes."""

    def edited(self, edit):
        """The converted tiny_clipn model, header edited, written as a new input file."""
        base = self.path("base.clipn")
        self.assertEqual(run_converter(os.path.join(FIXTURES, "tiny_clipn.pt"), base)[0], 0)
        header, data, _ = read_model(base)
        edit(header)
        h = json.dumps(header).encode()
        path = self.path("edited.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)
        return path

    def refuse(self, path, expect):
        out = self.path("out.clipn")
        rc, err = run_converter(path, out)
        self.assertEqual(rc, 1, err)
        self.assertIn(expect, err)
        self.assertFalse(os.path.exists(out))

    def test_missing_tensor(self):
        path = self.edited(lambda h: h.pop("transformer_no.resblocks.1.attn.in_proj_bias"))
        self.refuse(path, "missing tensor transformer_no.resblocks.1.attn.in_proj_bias "
                          "(expected shape [96])")

    def test_misshaped_tensor(self):
        def edit(h):
            h["visual.transformer.resblocks.1.ln_2.weight"]["shape"] = [2, 16]
        self.refuse(self.edited(edit), "tensor visual.transformer.resblocks.1.ln_2.weight: "
                                       "expected shape [32], found [2, 16]")

    def test_misshaped_projection(self):
        def edit(h):
            h["text_projection_no"]["shape"] = [16, 32]
        self.refuse(self.edited(edit),
                    "tensor text_projection_no: expected shape [32, 16], found [16, 32]")

    def test_non_square_position_embedding(self):
        def edit(h):
            e = h["visual.positional_embedding"]
            e["shape"] = [16, 32]
            e["data_offsets"][1] = e["data_offsets"][0] + 16 * 32 * 4
        self.refuse(self.edited(edit), "visual.positional_embedding")

    def test_heads_must_divide_width(self):
        out = self.path("out.clipn")
        rc, err = run_converter(os.path.join(FIXTURES, "tiny_clipn.pt"), out,
                                "--heads-text", "5")
        self.assertEqual(rc, 1)
        self.assertIn("text width 32 is not divisible by 5 heads", err)
        self.assertFalse(os.path.exists(out))

    def test_extra_tensors_are_dropped(self):
        def edit(h):
            h["attn_mask"] = dict(h["ln_final.bias"])
        out = self.path("out.clipn")
        rc, err = run_converter(self.edited(edit), out)
        self.assertEqual(rc, 0, err)
        self.assertIn("dropping", err)
        self.assertNotIn("attn_mask", read_model(out)[0])


if __name__ == "__main__":
    unittest.main()
