"""The binding against include/qlib.h: every enum constant, every function's
prototype, the version. These tests read the header, not the library."""

import ctypes
import re

import pytest

from _helpers import HEADER, qlib
from qlib import _lib

pytestmark = pytest.mark.nolib


def header_text():
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    return text


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_enum_constants():
    """{name: value} of every QLIB_* constant defined inside an enum."""
    code = strip_comments(header_text())
    out = {}
    for body in re.findall(r"\benum\b[^{;]*\{(.*?)\}", code, flags=re.S):
        for name, value in re.findall(r"\b(QLIB_[A-Z0-9_]+)\s*=\s*(-?(?:0x[0-9a-fA-F]+|\d+))",
                                      body):
            out[name] = int(value, 0)
    return out


def test_header_has_enums():
    consts = header_enum_constants()
    # sanity of the parser itself
    assert consts["QLIB_OK"] == 0
    assert consts["QLIB_ERR_FORMAT"] == 8
    assert len(consts) >= 30


def test_every_header_constant_is_mirrored():
    consts = header_enum_constants()
    for cname, value in consts.items():
        pyname = cname[len("QLIB_"):]
        assert hasattr(qlib, pyname), "qlib.%s missing (header: %s = %d)" % (pyname, cname,
                                                                              value)
        assert getattr(qlib, pyname) == value, "qlib.%s = %d, header %s = %d" % (
            pyname, getattr(qlib, pyname), cname, value)


def test_no_stale_constants():
    consts = header_enum_constants()
    from qlib._enums import c_constants
    for pyname, value in c_constants().items():
        assert "QLIB_" + pyname in consts, "qlib.%s is not in the header" % pyname
        assert consts["QLIB_" + pyname] == value


@pytest.mark.parametrize("cls,prefix", [
    (qlib.Status, "QLIB_"), (qlib.Method, "QLIB_METHOD_"), (qlib.Param, "QLIB_PARAM_"),
    (qlib.Compute, "QLIB_COMPUTE_"), (qlib.Calib, "QLIB_CALIB_"), (qlib.Load, "QLIB_LOAD_"),
    (qlib.Layout, "QLIB_LAYOUT_"),
])
def test_enum_classes_match(cls, prefix):
    consts = header_enum_constants()
    if cls is qlib.Status:
        expect = {k: v for k, v in consts.items()
                  if k == "QLIB_OK" or k.startswith("QLIB_ERR_")}
    else:
        expect = {k: v for k, v in consts.items() if k.startswith(prefix)}
    got = {prefix + name: int(m) for name, m in cls.__members__.items()}
    assert got == expect


def test_param_types_match_header_comments():
    """Parameters documented as float in the header are set with set_float."""
    code = header_text()
    body = re.search(r"typedef enum qlib_param \{(.*?)\} qlib_param;", code, flags=re.S).group(1)
    entries = re.findall(r"(QLIB_PARAM_\w+)\s*=\s*\d+\s*,?\s*/\*\s*(\w+)", body)
    assert entries
    from qlib._enums import FLOAT_PARAMS
    for cname, kind in entries:
        p = qlib.Param[cname[len("QLIB_PARAM_"):]]
        assert kind in ("int", "float"), cname
        assert (p in FLOAT_PARAMS) == (kind == "float"), cname


def test_version_matches_header():
    code = header_text()
    major, minor, patch = (int(re.search(r"#define QLIB_VERSION_%s (\d+)" % part, code).group(1))
                           for part in ("MAJOR", "MINOR", "PATCH"))
    assert qlib.HEADER_VERSION == "%d.%d.%d" % (major, minor, patch)
    assert re.search(r'#define QLIB_VERSION_STRING "%s"' % re.escape(qlib.HEADER_VERSION), code)


# ------------------------------------------------------------- prototypes
_P = ctypes.POINTER
C_TYPES = {
    "void": None,
    "int": ctypes.c_int, "unsigned": ctypes.c_uint, "size_t": ctypes.c_size_t,
    "float": ctypes.c_float, "double": ctypes.c_double,
    "qlib_status": ctypes.c_int, "qlib_method": ctypes.c_int, "qlib_param": ctypes.c_int,
    "qlib_compute": ctypes.c_int, "qlib_layout": ctypes.c_int,
    "char*": ctypes.c_char_p, "void*": ctypes.c_void_p,
    "float*": _lib.float_p, "float**": _P(_lib.float_p), "int32_t*": _lib.int32_p,
    "int*": _P(ctypes.c_int),
    "size_t*": _P(ctypes.c_size_t), "void**": _P(ctypes.c_void_p),
    "qlib_ctx*": _lib.ctx_p, "qlib_ctx**": _P(_lib.ctx_p),
    "qlib_config*": _lib.config_p, "qlib_config**": _P(_lib.config_p),
    "qlib_calib*": _lib.calib_p, "qlib_calib**": _P(_lib.calib_p),
    "qlib_tensor*": _lib.tensor_p, "qlib_tensor**": _P(_lib.tensor_p),
    "qlib_allocator*": _P(_lib.qlib_allocator), "qlib_parallel*": _P(_lib.qlib_parallel),
    "qlib_progress_fn": _lib.progress_fn,
}


def normalize(ctype):
    t = re.sub(r"\bconst\b", " ", ctype)
    t = re.sub(r"\s+", " ", t).strip()
    return re.sub(r"\s*\*", "*", t)


def header_functions():
    code = strip_comments(header_text())
    out = {}
    for ret, name, params in re.findall(r"QLIB_API\s+([\w\s\*]+?)\s*\b(qlib_\w+)\s*\(([^)]*)\)\s*;",
                                        code):
        args = []
        params = params.strip()
        if params and params != "void":
            for p in params.split(","):
                # an array parameter (size_t part_bytes[4]) is a pointer
                p, arrays = re.subn(r"\s*\[\s*\w*\s*\]\s*$", "", p.strip())
                m = re.match(r"^(.*?[\s\*])(\w+)$", p)
                assert m, "cannot parse parameter %r of %s" % (p, name)
                args.append(normalize(m.group(1)) + "*" * arrays)
        out[name] = (normalize(ret), args)
    return out


def test_every_function_is_declared():
    funcs = header_functions()
    assert len(funcs) >= 45
    assert set(funcs) == set(_lib.PROTOTYPES), (
        "missing: %s; extra: %s" % (sorted(set(funcs) - set(_lib.PROTOTYPES)),
                                    sorted(set(_lib.PROTOTYPES) - set(funcs))))


def test_prototypes_match_header():
    for name, (ret, args) in header_functions().items():
        restype, argtypes = _lib.PROTOTYPES[name]
        assert C_TYPES[ret] == restype, "%s returns %s" % (name, ret)
        assert len(args) == len(argtypes), name
        for i, (a, got) in enumerate(zip(args, argtypes)):
            assert C_TYPES[a] == got, "%s argument %d is %s, declared %r" % (name, i, a, got)


def test_callback_tables_match_header():
    code = strip_comments(header_text())
    for struct, cls in (("qlib_allocator", _lib.qlib_allocator),
                        ("qlib_parallel", _lib.qlib_parallel)):
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (struct, struct), code,
                         flags=re.S).group(1)
        names = []
        for decl in body.split(";"):
            if decl.strip():
                m = re.search(r"\(\*\s*(\w+)\s*\)", decl) or re.search(r"(\w+)\s*$", decl)
                names.append(m.group(1))
        assert names == [f[0] for f in cls._fields_], (struct, names)


def test_method_names():
    assert [qlib.method_name(m) for m in qlib.Method] == ["none", "rtn", "gptq", "awq",
                                                          "llm-int8"]
    assert qlib.method_name(99) == "unknown"
