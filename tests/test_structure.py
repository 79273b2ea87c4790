"""The shape of the code (ARCHITECTURE.md): no import cycle, no private tensor fields read
outside core/, and ``import embtable`` stays light."""

import ast
import os
import pathlib
import random
import re
import subprocess
import sys

import pytest

import embtable

PACKAGE = pathlib.Path(embtable.__file__).parent
ROOT = PACKAGE.parent


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported_modules(name: str) -> set[str]:
    """The embtable modules that importing `name` runs, read from every import statement in
    it (function-local ones too): the module imported, the packages above it (their
    ``__init__`` runs first) except those above `name` itself, which are running already."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    result = set()
    for module in found:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate in MODULES and candidate not in own_ancestors:
                result.add(candidate)
    return result


def test_the_import_graph_has_no_cycle():
    graph = {name: imported_modules(name) for name in MODULES}
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        path.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


LEAVES = {"errors", "validate", "dtype", "device", "rng", "norms", "interop", "checkpoint", "memory"}
LAYERS = ["kernels", "backends", "core", "tables", "optim", "nn", "io", "torch", "apps"]  # bottom first


def rank(name: str) -> int:
    """Where a module sits in ARCHITECTURE.md's picture: leaves lowest, the package itself top."""
    part = name.split(".")[1] if name.count(".") else "__init__"
    if part in LEAVES:
        return -1
    return LAYERS.index(part) if part in LAYERS else len(LAYERS)


def test_imports_go_down_the_layers():
    upward = [f"{name} -> {imported}" for name in MODULES for imported in imported_modules(name)
              if rank(imported) > rank(name)]
    assert not upward, "\n".join(upward)


def test_kernels_import_nothing_of_embtable_but_kernels():
    outside = [f"{name} -> {imported}" for name in MODULES if name.startswith("embtable.kernels")
               for imported in imported_modules(name) if not imported.startswith("embtable.kernels")]
    assert not outside, "\n".join(outside)


def test_the_graph_sees_imports():
    """The checks read real edges (a check that finds none could never fail)."""
    assert rank("embtable.nn.layer") > rank("embtable.tables.dense") > rank("embtable.core.tensor") > rank("embtable.dtype")
    assert "embtable.core.tensor" in imported_modules("embtable.core.autograd")
    assert "embtable.backends" in imported_modules("embtable.core.tensor")
    assert "embtable.kernels.cpu.rows" in imported_modules("embtable.backends.numpy_backend")  # a local import
    assert "embtable" not in imported_modules("embtable.nn.layer")  # its own package is running


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_modules_import_in_any_order(seed):
    """Every module (but ``__main__``, which runs the command), imported in a random order in
    a fresh interpreter: none needs another imported before it."""
    names = sorted(name for name in MODULES if not name.endswith("__main__"))
    random.Random(seed).shuffle(names)
    script = "import importlib\nfor name in %r:\n    importlib.import_module(name)\n" % names
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


PRIVATE_TENSOR_FIELDS = re.compile(r"\._(data|backend|wrap|node|versions?|requires_grad|grad)\b")


def test_nothing_outside_core_reads_a_tensors_private_fields():
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in PACKAGE.rglob("*.py") if "core" not in path.relative_to(PACKAGE).parts
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if PRIVATE_TENSOR_FIELDS.search(line)]
    assert not offenders, "\n".join(offenders)


def test_the_private_field_pattern_matches():
    assert PRIVATE_TENSOR_FIELDS.search("x = weight._data[3]")
    assert PRIVATE_TENSOR_FIELDS.search("Tensor._wrap(array, device)")
    assert not PRIVATE_TENSOR_FIELDS.search("self._database = 1")


def test_import_embtable_stays_light():
    env = {k: v for k, v in os.environ.items() if k != "EMBTABLE_CPU_BACKEND"}
    script = ("import sys, embtable\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('tqdm', 'numba', 'torch', 'matplotlib'))\n"
              "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                         text=True, timeout=120).stdout.strip()
    assert out == "", f"import embtable imported {out}"
