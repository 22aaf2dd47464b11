"""The CLI's .npy reader against numpy on crafted headers: for every file, either the CLI
refuses it, or it reads exactly what numpy reads (shape and values, C order float32).
Headers numpy reads differently from a naive parser (duplicate keys: the last one wins in
numpy) must be refused. Run with a python that has numpy:
    /usr/bin/python3 tests/cli/test_npy_strict.py build/tests/npy_dump
"""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

DUMP = sys.argv[1] if len(sys.argv) > 1 else "build/tests/npy_dump"
data6 = np.arange(6, dtype="<f4") * 0.5 - 1.0


def npy(header, payload, version=(1, 0)):
    """A .npy file with this header text, padded as numpy pads it."""
    h = header.encode("latin1" if version < (3, 0) else "utf-8")
    pre = 10 if version == (1, 0) else 12
    h += b" " * ((-(pre + len(h) + 1)) % 64) + b"\n"
    fmt = "<H" if version == (1, 0) else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(h)) + h + payload


def numpy_reads(path):
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any refusal is a refusal
        return None, type(e).__name__
    return a, None


def cli_reads(path):
    r = subprocess.run([DUMP, path], capture_output=True, timeout=30)
    if r.returncode != 0:
        return None, r.stderr.decode("utf-8", "replace").strip()
    lines = r.stdout.decode().split("\n")
    head = [int(v) for v in lines[0].split()]
    shape = tuple(head[1:])
    vals = np.array([float(v) for v in lines[1:] if v], dtype=np.float32)
    return vals.reshape(shape), None


D = "'descr': '<f4', 'fortran_order': False"
CASES = [
    # (name, bytes, must): must = "accept" (numpy writes it), "refuse", or "either"
    ("numpy 2x3", None, "accept"),
    ("numpy scalar", None, "accept"),
    ("numpy empty 0x4", None, "accept"),
    ("numpy 1-D", None, "accept"),
    ("numpy 4-D", None, "accept"),
    ("numpy v2.0", None, "accept"),
    ("numpy v3.0", None, "accept"),
    ("no trailing comma", npy("{%s, 'shape': (2, 3)}" % D, data6.tobytes()), "either"),
    ("double quotes", npy('{"descr": "<f4", "fortran_order": False, "shape": (6,)}',
                          data6.tobytes()), "either"),
    ("keys in another order", npy("{'shape': (3, 2), 'fortran_order': False, 'descr': '<f4'}",
                                  data6.tobytes()), "either"),
    ("no spaces", npy("{'descr':'<f4','fortran_order':False,'shape':(2,3),}", data6.tobytes()),
     "either"),
    # numpy takes the last of duplicate keys: a naive reader takes the first
    ("duplicate descr", npy("{'descr': '<f8', 'descr': '<f4', 'fortran_order': False, "
                            "'shape': (6,), }", data6.tobytes()), "refuse"),
    ("duplicate descr, f4 first", npy("{'descr': '<f4', 'descr': '<f2', 'fortran_order': False, "
                                      "'shape': (12,), }", data6.tobytes()), "refuse"),
    ("duplicate fortran_order (True wins)", npy("{'descr': '<f4', 'fortran_order': False, "
                                                "'fortran_order': True, 'shape': (2, 3), }",
                                                data6.tobytes()), "refuse"),
    ("duplicate fortran_order (False wins)", npy("{'descr': '<f4', 'fortran_order': True, "
                                                 "'fortran_order': False, 'shape': (2, 3), }",
                                                 data6.tobytes()), "refuse"),
    ("duplicate shape", npy("{%s, 'shape': (6,), 'shape': (2, 3), }" % D, data6.tobytes()),
     "refuse"),
    ("unknown key", npy("{%s, 'shape': (6,), 'extra': 1, }" % D, data6.tobytes()), "refuse"),
    ("missing shape", npy("{%s, }" % D, data6.tobytes()), "refuse"),
    ("fortran_order True", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                               data6.tobytes()), "refuse"),
    ("big-endian", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }",
                       data6.astype(">f4").tobytes()), "refuse"),
    ("float64", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                    data6[:3].astype("<f8").tobytes()), "refuse"),
    ("descr 'float32'", npy("{'descr': 'float32', 'fortran_order': False, 'shape': (6,), }",
                            data6.tobytes()), "refuse"),
    ("shape (6) is an int", npy("{%s, 'shape': (6), }" % D, data6.tobytes()), "refuse"),
    ("shape (2,,3)", npy("{%s, 'shape': (2,,3), }" % D, data6.tobytes()), "refuse"),
    ("shape (,)", npy("{%s, 'shape': (,), }" % D, b""), "refuse"),
    ("shape (2 3)", npy("{%s, 'shape': (2 3), }" % D, data6.tobytes()), "refuse"),
    ("shape [2, 3]", npy("{%s, 'shape': [2, 3], }" % D, data6.tobytes()), "refuse"),
    ("shape (-6,)", npy("{%s, 'shape': (-6,), }" % D, data6.tobytes()), "refuse"),
    ("shape (True, 6)", npy("{%s, 'shape': (True, 6), }" % D, data6.tobytes()), "refuse"),
    ("shape (0x6,)", npy("{%s, 'shape': (0x6,), }" % D, data6.tobytes()), "refuse"),
    ("shape (6L,)", npy("{%s, 'shape': (6L,), }" % D, data6.tobytes()), "refuse"),
    ("shape (06,)", npy("{%s, 'shape': (06,), }" % D, data6.tobytes()), "refuse"),
    ("shape (6.0,)", npy("{%s, 'shape': (6.0,), }" % D, data6.tobytes()), "refuse"),
    ("shape (1_2,)", npy("{%s, 'shape': (1_2,), }" % D, (data6.tolist() * 2 and
                                                            np.zeros(12, '<f4').tobytes())),
     "refuse"),
    ("9 dims", npy("{%s, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 6), }" % D, data6.tobytes()),
     "refuse"),
    ("2^64 elements", npy("{%s, 'shape': (4294967296, 4294967296), }" % D, b""), "refuse"),
    ("comment in the dict", npy("{%s, # x\n 'shape': (6,), }" % D, data6.tobytes()), "refuse"),
    ("parenthesised descr", npy("{'descr': ('<f4'), 'fortran_order': False, 'shape': (6,), }",
                                data6.tobytes()), "refuse"),
    ("escaped descr", npy("{'descr': '<\\x66\\x34', 'fortran_order': False, 'shape': (6,), }",
                          data6.tobytes()), "refuse"),
    ("text after the dict", npy("{%s, 'shape': (6,), } x" % D, data6.tobytes()), "refuse"),
    ("two dicts", npy("{%s, 'shape': (6,), }{}" % D, data6.tobytes()), "refuse"),
    ("NUL in the header", npy("{%s, 'shape': (6,), }\0" % D, data6.tobytes()), "refuse"),
    ("not a dict", npy("[1, 2]", data6.tobytes()), "refuse"),
    ("data too short", npy("{%s, 'shape': (7,), }" % D, data6.tobytes()), "refuse"),
    ("data too long", npy("{%s, 'shape': (5,), }" % D, data6.tobytes()), "refuse"),
    ("version 4.0", npy("{%s, 'shape': (6,), }" % D, data6.tobytes())[:6] + b"\x04\x00" +
     npy("{%s, 'shape': (6,), }" % D, data6.tobytes())[8:], "refuse"),
    ("version 1.1", npy("{%s, 'shape': (6,), }" % D, data6.tobytes())[:6] + b"\x01\x01" +
     npy("{%s, 'shape': (6,), }" % D, data6.tobytes())[8:], "refuse"),
    ("header length past the end", b"\x93NUMPY\x01\x00\xff\x7f{}", "refuse"),
]


def numpy_written(name, path):
    arrays = {"numpy 2x3": data6.reshape(2, 3), "numpy scalar": np.float32(2.5),
              "numpy empty 0x4": np.zeros((0, 4), np.float32),
              "numpy 1-D": data6, "numpy 4-D": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4),
              "numpy v2.0": data6.reshape(3, 2), "numpy v3.0": data6.reshape(6, 1)}
    a = np.asarray(arrays[name], dtype="<f4")
    version = {"numpy v2.0": (2, 0), "numpy v3.0": (3, 0)}.get(name)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=version)


def main():
    fails = 0
    with tempfile.TemporaryDirectory() as d:
        for i, (name, blob, must) in enumerate(CASES):
            path = os.path.join(d, "case%d.npy" % i)
            if blob is None:
                numpy_written(name, path)
            else:
                with open(path, "wb") as f:
                    f.write(blob)
            ref, np_err = numpy_reads(path)
            got, cli_err = cli_reads(path)
            if got is None:
                verdict = "refused (%s)" % cli_err.split(": ", 2)[-1]
                ok = must != "accept"
            else:
                verdict = "read %s" % (got.shape,)
                ok = (must != "refuse" and ref is not None and ref.dtype == np.float32 and
                      not (ref.ndim > 1 and np.isfortran(ref)) and ref.shape == got.shape and
                      np.array_equal(ref, got))
            print("%s %-38s cli %s; numpy %s" % ("ok  " if ok else "FAIL", name, verdict,
                                                  "refuses (%s)" % np_err if ref is None
                                                  else "reads %s %s" % (ref.dtype, ref.shape)))
            fails += not ok
    print("npy strict: %d cases, %d failed" % (len(CASES), fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
