"""The house rules of docs/style.md that a machine can check: imports run one way (each layer
imports with every layer above it blocked, and the module graph has no cycle), no file over 600
lines and no function over 60 in pacofr/, csrc/, tests/ and benchmarks/, no line over 120
characters in their Python and C sources and setup.py, and only csrc/python/ includes Python.h."""
import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pacofr"
CSRC = ROOT / "csrc"
MAX_FILE, MAX_FUNCTION, MAX_WIDTH = 600, 60, 120

# bottom to top: a module may import its own layer and the layers below it, never one above
LAYERS = [
    ["_C", "_version", "_threads", "_io", "_checks", "config", "runtime", "ops", "posembed", "data", "ref",
     "distributed"],
    ["model", "heads"],
    ["checkpoint"],
    ["regions", "masking"],
    ["optim"],
    ["paco"],
    ["train", "eval"],
    ["sweep"],
    ["cli"],
    ["testing"],
]
SIBLINGS = {"train", "eval"}   # one layer, but neither imports the other
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _top_modules():
    names = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"} | {p.name for p in PKG.iterdir()
                                                                          if (p / "__init__.py").is_file()}
    return names | {p.name.split(".")[0] for p in PKG.glob("_C*.so")}


def test_every_module_has_a_layer():
    placed = {m for layer in LAYERS for m in layer}
    assert _top_modules() - placed == set(), "add new modules to LAYERS"


IMPORT_WITH_BLOCKS = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys, types
    root, blocked, wanted = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3].split(",")
    pkg = types.ModuleType("pacofr")          # the package without its __init__ (which imports all)
    pkg.__path__ = [root + "/pacofr"]
    sys.modules["pacofr"] = pkg

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            parts = name.split(".")
            if parts[0] == "pacofr" and len(parts) > 1 and parts[1] in blocked:
                raise ImportError(f"{name} is imported from a lower layer")
            return None
    sys.meta_path.insert(0, Block())
    for name in wanted:
        mod = importlib.import_module("pacofr." + name)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), "pacofr." + name + "."):
            importlib.import_module(info.name)
    print("ok")
""")


@pytest.mark.parametrize("level", range(len(LAYERS)), ids=["+".join(layer) for layer in LAYERS])
def test_layer_imports_with_the_layers_above_blocked(level):
    above = [m for layer in LAYERS[level + 1:] for m in layer]
    r = subprocess.run([sys.executable, "-c", IMPORT_WITH_BLOCKS, str(ROOT), ",".join(above) or "-",
                        ",".join(m for m in LAYERS[level] if m != "_C")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_the_layer_check_catches_an_upward_import():
    """The blocking harness fails when a module reaches up: model with checkpoint blocked is fine,
    checkpoint with model blocked is not."""
    r = subprocess.run([sys.executable, "-c", IMPORT_WITH_BLOCKS, str(ROOT), "model", "checkpoint"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "pacofr.model is imported from a lower layer" in r.stderr


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path):
    return _imports_of(path.read_text(), _module_name(path), path.name == "__init__.py")


def _imports_of(text, name, is_package):
    """Every pacofr module that module ``name``'s source imports, at any depth of its code
    (function-level imports too)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "pacofr"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "pacofr":
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}   # `from . import x` names a module
    return out


def _import_graph():
    """module -> the pacofr modules it imports anywhere in its code (its parent packages left out:
    they run first anyway)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    return {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}


def _top(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _upward_edges(graph):
    bad = []
    for m, deps in graph.items():
        src = _top(m)
        for d in deps:
            dst = _top(d)
            if src is None or dst is None or src == dst:
                continue
            if LAYER[dst] > LAYER[src] or (src in SIBLINGS and dst in SIBLINGS):
                bad.append(f"{m} -> {d}")
    return bad


def test_no_import_reaches_up_even_inside_a_function():
    """The static graph, function-level imports included: every edge goes down or sideways."""
    assert _upward_edges(_import_graph()) == []


def test_the_edge_check_catches_a_function_level_upward_import():
    src = "from .model import Model\n\ndef f():\n    from .paco import PacoFR\n    from .train import pretrain\n"
    deps = _imports_of(src, "pacofr.checkpoint", False)
    assert {"pacofr.model", "pacofr.paco", "pacofr.train"} <= deps
    assert sorted(_upward_edges({"pacofr.checkpoint": deps})) == ["pacofr.checkpoint -> pacofr.paco",
                                                                   "pacofr.checkpoint -> pacofr.paco.PacoFR",
                                                                   "pacofr.checkpoint -> pacofr.train",
                                                                   "pacofr.checkpoint -> pacofr.train.pretrain"]
    assert _upward_edges({"pacofr.eval.tasks": {"pacofr.train.engine"}}) == ["pacofr.eval.tasks -> pacofr.train.engine"]


def test_no_import_cycle():
    graph = _import_graph()
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m)


def _python_functions(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def _strip_c(text):
    """C source with comments and string / char literals blanked (newlines kept)."""
    pattern = r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
    return re.sub(pattern, lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)


def c_functions(text):
    """(name, first line, lines) of each top-level function definition: from the first line of
    its signature to its closing brace."""
    lines = _strip_c(text).split("\n")
    depth, head, out = 0, [], []
    for i, line in enumerate(lines):
        if depth == 0 and "{" not in line:
            stripped = line.strip()
            if not stripped or stripped.endswith((";", "}")) or stripped.startswith("#"):
                head = []
            else:
                head.append((i, stripped))
            continue
        if depth == 0:
            before = " ".join([h for _, h in head] + [line[:line.index("{")].strip()])
            start = head[0][0] if head else i
            is_function = before.rstrip().endswith(")") and "=" not in before
            m = re.search(r"(\w+)\s*\(", before)
        depth += line.count("{") - line.count("}")
        if depth == 0:
            if is_function and m:
                out.append((m.group(1), start + 1, i - start + 1))
            head = []
    return out


def test_c_function_finder_measures_what_it_should():
    src = ("/* f: (n) -> n { */\nstatic int f(int n,\n              int m) {\n    if (n) {\n        return 1;\n"
           "    }\n    return \"}\"[0];\n}\n\nstatic const int t[] = {1, 2};\ntypedef struct {\n    int a;\n} s;\n")
    assert c_functions(src) == [("f", 2, 7)]


def test_no_file_or_function_too_long():
    too_long = []
    python = [p for d in (PKG, ROOT / "tests", ROOT / "benchmarks") for p in sorted(d.rglob("*.py"))]
    for path in python + sorted(CSRC.rglob("*.[ch]")) + sorted(CSRC.rglob("*.inc")):
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if text.count("\n") > MAX_FILE:
            too_long.append(f"{rel}: {text.count(chr(10))} lines")
        funcs = _python_functions(path) if path.suffix == ".py" else c_functions(text)
        too_long += [f"{rel}:{line} {name}: {n} lines" for name, line, n in funcs if n > MAX_FUNCTION]
    assert too_long == [], "\n".join(too_long)


# the sources the width rule covers; git lists them, so build/ and other ignored outputs stay out
WIDTH_SOURCES = ["pacofr/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "csrc/**/*.[ch]", "csrc/**/*.inc",
                 "benchmarks/**/*.[ch]", "setup.py"]


def _width_sources():
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--"]
                       + [f":(glob){g}" for g in WIDTH_SOURCES], cwd=ROOT, capture_output=True, text=True)
    if r.returncode == 0:
        return sorted({ROOT / name for name in r.stdout.split("\0") if name and (ROOT / name).is_file()})
    found = {p for g in WIDTH_SOURCES for p in ROOT.glob(g) if p.is_file()}   # no git: glob, build/ left out
    return sorted(p for p in found if p.relative_to(ROOT).parts[0] != "build")


def too_wide(paths, root):
    """"path:line (N chars)" for each line of ``paths`` longer than MAX_WIDTH characters, paths
    written relative to ``root``."""
    out = []
    for path in paths:
        for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if len(line) > MAX_WIDTH:
                out.append(f"{Path(path).relative_to(root)}:{i} ({len(line)} chars)")
    return out


def test_no_line_too_wide():
    paths = _width_sources()
    assert len(paths) > 100 and ROOT / "setup.py" in paths and ROOT / "csrc" / "gemm" / "gemm_ukernel.inc" in paths
    wide = too_wide(paths, ROOT)
    assert wide == [], "\n".join(wide)


def test_the_width_check_catches_a_121_character_line(tmp_path):
    ok, bad = tmp_path / "ok.py", tmp_path / "sub" / "bad.c"
    bad.parent.mkdir()
    ok.write_text("x = 1\n" + "#" * 120 + "\n")
    bad.write_text("int x;\n\n" + "/" * 121 + "\n" + "é" * 120 + "\n")   # width counts characters, not bytes
    assert too_wide([ok], tmp_path) == []
    assert too_wide([ok, bad], tmp_path) == [f"{Path('sub', 'bad.c')}:3 (121 chars)"]


def test_only_csrc_python_includes_python_h():
    """Directly, or through a header of csrc/python/."""
    files = sorted(CSRC.rglob("*.[ch]")) + sorted(CSRC.rglob("*.inc"))
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if re.search(r'#\s*include\s*[<"](Python\.h|numpy/|python/)', p.read_text())
                 and p.relative_to(CSRC).parts[0] != "python"]
    assert offenders == []


def test_only_model_py_touches_the_engine_handle():
    """Model's handle and tensor table are private: everything else uses its public methods."""
    files = [p for d in ("pacofr", "tests", "benchmarks", "notebooks") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".ipynb") and p.resolve() not in (PKG / "model.py", Path(__file__).resolve())]
    pattern = re.compile(r"\._h\b|\._info\(|\._by_name\b")
    assert [str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text())] == []


def test_training_and_evaluation_never_call_the_c_core():
    """train/ and eval/ drive models (Model, PacoFR, the heads) and the optimizer; they never
    call pacofr._C themselves."""
    offenders = [str(p.relative_to(ROOT)) for d in ("train", "eval") for p in (PKG / d).rglob("*.py")
                 if re.search(r"\b_C\b", p.read_text())]
    assert offenders == []


def test_every_binding_has_a_docstring():
    from pacofr import _C
    names = [n for n in dir(_C) if not n.startswith("_") and callable(getattr(_C, n))]
    assert len(names) > 80
    assert [n for n in names if len((getattr(_C, n).__doc__ or "").strip()) < 20] == []


# C calls a binding may make with the GIL held: settings, queries and accessors, no compute
GIL_HELD_OK = re.compile(r"pf_(set|get)_\w+|pf_prof_\w+|pf_portable_kernel_\w+|pf_dnnl_\w+|pf_last_error"
                         r"|pf_vit_(get_config|tensor|num_tensors|num_params|acts_bytes|set_dtype|free|latent|pred)"
                         r"|pf_attention_bf16_products|pf_attention_att16")


def gil_held_compute(text):
    """(binding, C function) pairs where a binding calls a computing pf_* function outside PF_NOGIL."""
    out = []
    for m in re.finditer(r"^static PyObject \*(py_\w+)\(.*?^}", text, re.S | re.M):
        released = " ".join(re.findall(r"PF_NOGIL\((.*?)\);\n", m.group(0), re.S))
        inside = set(re.findall(r"\b(pf_\w+)\s*\(", released))
        out += [(m.group(1), f) for f in sorted(set(re.findall(r"\b(pf_\w+)\s*\(", m.group(0))) - inside)
                if not GIL_HELD_OK.fullmatch(f)]
    return out


def test_every_computing_binding_releases_the_gil():
    text = "".join(p.read_text() for p in sorted((CSRC / "python").glob("bind_*.c")))
    assert len(re.findall(r"^static PyObject \*py_", text, re.M)) > 80
    assert gil_held_compute(text) == []
    planted = "static PyObject *py_x(PyObject *self, PyObject *args) {\n    pf_gelu_forward(a, b, n);\n}\n"
    assert gil_held_compute(planted) == [("py_x", "pf_gelu_forward")]
