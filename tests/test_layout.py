"""The package's layout draws its architecture: imports only go down the layers, no two modules
share a file name, every folder says what it holds, and no file outgrows one reading.

The modules are parsed with `ast`, never imported, so a module that fails to import, or that
imports lazily inside a function, is still checked.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = "numpretrain"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# The layers, bottom up (numpretrain/__init__.py lists them). A module may import its own
# layer and the ones below. storage/ is split: atomic.py, json_files.py and formats.py import only errors
# (tokenizers and the trainer build on them), while runs.py and hf.py build models and
# tokenizers from files; storage/__init__.py holds only a docstring, so it sits at the bottom.
RANKS = {
    "errors": 0,
    "speed": 1, "storage": 1, "storage.atomic": 1, "storage.json_files": 1,
    "storage.formats": 1,
    "autograd": 2,
    "nn": 3,
    "models": 4,
    "tokenizers": 5,
    "data": 6,
    "storage.runs": 7, "storage.hf": 7, "storage.hf_names": 7, "storage.hf_classifier": 7, "storage.hf_tokenizers": 7,
    "training": 8,
    "app": 9,
}
TOP_LEVEL = {PACKAGE, f"{PACKAGE}.__main__"}   # the package's own __init__ and __main__ may import anything

MAX_LINES = 450   # past this, a file is asking to be split (STYLE.md: one job per small file)

# Known exceptions, waiting for a split or a move by whoever owns the file: paths relative to the
# repository ("numpretrain/training/optimizers.py") and (importer, imported) module pairs. Both
# are empty now that autograd/functional.py and training/optimizers.py have been split; add an
# entry only with a comment saying who is fixing it. test_allowances_are_current fails as soon
# as an entry is no longer needed, so the lists cannot go stale.
STILL_TOO_LONG = set()
STILL_UPWARD = set()


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def layer_of(module):
    """(folder, rank) for a module of the package, the rank of its longest prefix in RANKS;
    (None, None) for the top-level package and anything RANKS does not place."""
    inside = module.split(".")[1:]
    for n in range(len(inside), 0, -1):
        key = ".".join(inside[:n])
        if key in RANKS:
            return inside[0], RANKS[key]
    return None, None


def resolve(importer, node):
    """The modules of the package that one import statement reaches, as dotted names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:   # relative: count packages up from the importer's own package
        package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if base.split(".")[0] != PACKAGE:
        return []
    # `from numpretrain.storage import atomic` reaches the module storage/atomic.py, not the package
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def imports_of(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    return {(target, node.lineno) for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) for target in resolve(module, node)}


def goes_up(importer, target):
    """True unless `target` is in the importer's own layer (same folder, same rank) or in a lower
    one. The top-level package, which imports every layer, is in none."""
    layer, target_layer = layer_of(importer), layer_of(target)
    return target_layer != layer and (target_layer[1] is None or target_layer[1] >= layer[1])


def upward_imports():
    """(importer, imported, line) for every import that goes up, in every module but the top level."""
    return [(module, target, line) for module in MODULES if module not in TOP_LEVEL
            for target, line in sorted(imports_of(module)) if goes_up(module, target)]


def test_every_module_has_a_layer():
    assert not [m for m in MODULES if m not in TOP_LEVEL and layer_of(m)[1] is None]


def test_imports_only_go_down():
    upward = [f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {t}"
              for m, t, line in upward_imports() if (m, t) not in STILL_UPWARD]
    assert not upward, "imports that go up a layer (see RANKS):\n" + "\n".join(upward)


def test_no_two_modules_share_a_file_name():
    by_name = defaultdict(list)
    for path in MODULES.values():
        if path.name != "__init__.py":
            by_name[path.name].append(str(path.relative_to(ROOT.parent)))
    assert not {name: paths for name, paths in by_name.items() if len(paths) > 1}


def test_every_folder_has_an_init_with_a_docstring():
    folders = {path.parent for path in MODULES.values()}
    missing = [str(f.relative_to(ROOT.parent)) for f in sorted(folders) if not (f / "__init__.py").is_file()]
    assert not missing, f"folders without an __init__.py: {missing}"
    silent = [str(f.relative_to(ROOT.parent)) for f in sorted(folders)
              if not ast.get_docstring(ast.parse((f / "__init__.py").read_text(encoding="utf-8")))]
    assert not silent, f"__init__.py files without a docstring saying what the folder holds: {silent}"


def line_count(path):
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_too_long():
    too_long = {str(p.relative_to(ROOT.parent)): line_count(p) for p in MODULES.values()
                if line_count(p) > MAX_LINES and str(p.relative_to(ROOT.parent)) not in STILL_TOO_LONG}
    assert not too_long, f"files over {MAX_LINES} lines (split them by job): {too_long}"


def test_allowances_are_current():
    fits = [f for f in STILL_TOO_LONG if not (ROOT.parent / f).is_file() or line_count(ROOT.parent / f) <= MAX_LINES]
    assert not fits, f"these fit in {MAX_LINES} lines now: take them out of STILL_TOO_LONG: {fits}"
    upward = {(m, t) for m, t, _ in upward_imports()}
    gone = STILL_UPWARD - upward
    assert not gone, f"these imports no longer go up: take them out of STILL_UPWARD: {gone}"


@pytest.mark.parametrize("importer, statement, reaches", [
    ("numpretrain.data.lm", "from numpretrain.errors import DataError", ["numpretrain.errors"]),
    ("numpretrain.data.lm", "from numpretrain.storage import atomic", ["numpretrain.storage.atomic"]),
    ("numpretrain.data.lm", "import numpretrain.nn.module", ["numpretrain.nn.module"]),
    ("numpretrain.data.lm", "from . import mlm", ["numpretrain.data.mlm"]),
    ("numpretrain.data.lm", "from ..errors import DataError", ["numpretrain.errors"]),
    ("numpretrain.data", "from .classify import encode_for_bert", ["numpretrain.data.classify"]),
    ("numpretrain.data.lm", "import numpy as np", []),
])
def test_imports_are_resolved_to_modules(importer, statement, reaches):
    assert resolve(importer, ast.parse(statement).body[0]) == reaches


@pytest.mark.parametrize("importer, target, up", [
    ("numpretrain.nn.layers", "numpretrain.autograd.ops", False),
    ("numpretrain.nn.layers", "numpretrain.nn.module", False),
    ("numpretrain.storage.runs", "numpretrain.storage.formats", False),
    ("numpretrain.tokenizers.char", "numpretrain.storage.formats", False),
    ("numpretrain.autograd.ops", "numpretrain.nn.module", True),
    ("numpretrain.storage.formats", "numpretrain.storage.runs", True),    # same folder, higher layer
    ("numpretrain.speed.threads", "numpretrain.storage.atomic", True),    # same rank, another layer
    ("numpretrain.nn.layers", "numpretrain", True),                       # the top-level package imports all
])
def test_the_layer_rule(importer, target, up):
    assert goes_up(importer, target) == up
