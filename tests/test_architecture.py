"""The import-layer contract (docs/architecture.md), checked on the package's own source.

Every import of `orthovision_cli` (top level, inside functions, under TYPE_CHECKING) is read with
`ast`; each top-level module or package of `orthovision_cli` is a unit. A unit may import only
units of lower layers: so there is no cycle between units, and the flow
find → read → classify → plan → encode → write → send → report runs one way. Imports inside
functions are only for heavy or optional libraries, or for a reason written in `DEFERRED`.
Modules stay under ~400 lines unless their first lines say why.

The rule functions are tested on synthetic packages too, so that this test can fail.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pydicom.uid
import pytest

import orthovision_cli
from orthovision_cli.dicom import plan

PACKAGE = Path(orthovision_cli.__file__).resolve().parent

# Top to bottom. A unit imports only from layers below its own; units of one layer are
# independent of each other. The root `orthovision_cli/__init__.py` (the version) is ground.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("commands",),
    ("versions",),
    ("send", "review"),  # after the batch: PACS delivery; the review page, hot folder, --confirm
    ("batch",),  # the flow: find, analyse, plan, write, report
    (
        "decisions",
        "answers",
        "server",
    ),  # a person's labels and batch answers (read by analyse); the reference service
    ("remote",),  # the remote classifier (an IG client)
    ("fhir", "config", "manifest"),
    ("naming", "memory"),
    ("dicom",),  # plan and encode
    ("labels",),  # classify
    ("inputs", "vocab"),  # find and read; the code tables
    ("bounded", "tokens", "defaults", "types", "jsonlimits", "display", "outlock"),
    ("errors",),
)

# Third-party libraries a function may import where it needs them: heavy to load, or optional.
HEAVY = frozenset(
    {
        "numpy",
        "PIL",
        "pydicom",
        "pynetdicom",
        "tifffile",
        "imagecodecs",
        "jpeglib",
        "onnxruntime",
        "httpx",
        "starlette",
        "uvicorn",
        "fhir",
        "pydantic",
        "rich",
        "ctypes",
        "ssl",
        "distributed",
    }
)
# Our own modules imported inside a function, each with its reason. `commands/` and `cli.py` may
# defer any import: every command module is loaded to build the CLI, and each loads its core only
# when it runs (so `orthovision --help` and a re-run with nothing to do start fast).
DEFERRED: dict[tuple[str, str], str] = {
    ("batch/cluster_worker.py", "labels.local.packs"): "its package loads the classifier",
    ("batch/crashes.py", "resource"): "Unix only",
    ("inputs/cards.py", "zxingcpp"): "a native decoder: only for a photograph that may be a patient card",
    ("batch/pool.py", "remote"): "httpx: only for a remote run",
    ("batch/pool.py", "labels.local"): "onnxruntime and the pack: only when models are used",
    ("batch/resume.py", "labels.local.packs"): "its package loads the classifier",
    ("batch/tasks.py", "batch"): "the stages load numpy, Pillow, pydicom: in the workers",
    ("batch/runner.py", "batch.cluster"): "distributed: only for --cluster",
    ("inputs/source.py", "inputs.preview"): "numpy and Pillow: only when a classifier looks",
    ("labels/local/__init__.py", "labels.local.classifier"): "numpy, onnxruntime: on first use",
    ("labels/local/consistency.py", "vocab"): "issue 11's module; vocab always ships now",
    ("remote/__init__.py", "remote"): "httpx: only when a remote classifier is built",
    ("remote/multi.py", "remote.classifier"): "httpx: only when a remote classifier is built",
    ("review/preview.py", "inputs.preview"): "numpy and Pillow: only for a preview",
    ("review/teach.py", "labels.local.train"): "numpy and onnxruntime: only when teaching",
    ("send/superseded.py", "dicom.iods.rejection"): "pydicom: only when a rejection note is made",
    ("server/runner.py", "uvicorn"): "the server extra",
    ("server/runner.py", "server.guard"): "uvicorn: the server extra",
    ("versions.py", "labels.local.packs"): "only for --version",
}
MAX_LINES = 400
# Long modules another piece of work owns and will split; listed so that no new one slips in.
LONG_FOR_NOW: dict[str, str] = {}


# ---------------------------------------------------------------- the rules


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> Iterator[tuple[str, bool]]:
    """(absolute module imported, whether inside a function) for each import in `path`."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            local.update(id(n) for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in local
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from . import x` names a module x: count it as one.
            for alias in node.names:
                yield (f"{module}.{alias.name}" if not node.module else module), id(node) in local


def unit_of(module: str, root_name: str) -> str | None:
    parts = module.split(".")
    if parts[0] != root_name:
        return None
    return parts[1] if len(parts) > 1 else ""


def unit_graph(root: Path) -> dict[str, set[str]]:
    """unit → the units it imports (the root package itself, `""`, left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        here = unit_of(module_name(path, root), root.name)
        assert here is not None
        for module, _ in imports(path, root):
            there = unit_of(module, root.name)
            # A name of the root package (its __version__) is ground, not a unit.
            real = there and ((root / f"{there}.py").is_file() or (root / there).is_dir())
            if real and there != here and here:
                graph.setdefault(here, set()).add(str(there))
    return graph


def layer_violations(graph: dict[str, set[str]], layers: Sequence[Sequence[str]]) -> list[str]:
    """Each import that goes up or sideways, and each unit the layers do not place."""
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    out = []
    for unit, targets in sorted(graph.items()):
        for target in sorted(targets):
            if unit not in rank or target not in rank:
                out.append(f"{unit} -> {target}: not placed in LAYERS")
            elif rank[target] <= rank[unit]:
                out.append(f"{unit} -> {target}: imports {'up' if rank[target] < rank[unit] else 'sideways'}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if v not in index:
            visit(v)
    return found


def deferred_violations(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("commands/") or rel == "cli.py":
            continue
        for module, inside in imports(path, root):
            if not inside:
                continue
            top = module.split(".")[0]
            if top in HEAVY:
                continue
            ours = unit_of(module, root.name)
            reason = ours is not None and any(
                rel == f and (module + ".").startswith(f"{root.name}.{m}.") for f, m in DEFERRED
            )
            third_party = ours is None and (rel, top) in DEFERRED
            if not (reason or third_party):
                out.append(f"{rel}: `{module}` imported inside a function")
    return out


def long_modules(root: Path, limit: int = MAX_LINES, excused: Iterable[str] = ()) -> list[str]:
    """Modules over `limit` lines whose docstring does not say why ("over N lines ...")."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() in excused:
            continue
        text = path.read_text(encoding="utf-8")
        n = text.count("\n")
        if n <= limit:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not re.search(r"over \d+ lines", doc, re.IGNORECASE):
            out.append(f"{path.relative_to(root)}: {n} lines, no reason at its top")
    return out


# ---------------------------------------------------------------- the contract


def test_units_import_only_lower_layers() -> None:
    assert layer_violations(unit_graph(PACKAGE), LAYERS) == []


def test_no_cycle_between_units() -> None:
    assert cycles(unit_graph(PACKAGE)) == []


def test_imports_inside_functions_have_a_reason() -> None:
    assert deferred_violations(PACKAGE) == []


def test_no_long_module_without_a_reason() -> None:
    assert long_modules(PACKAGE, excused=LONG_FOR_NOW) == []


def test_uid_constants_are_pydicoms() -> None:
    """`dicom.plan` spells the SOP classes out (planning loads no pydicom): they must be equal."""
    assert pydicom.uid.VLPhotographicImageStorage == plan.VL_PHOTOGRAPHIC
    assert pydicom.uid.SecondaryCaptureImageStorage == plan.SECONDARY_CAPTURE
    assert pydicom.uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage == plan.MF_GRAYSCALE_BYTE_SC
    assert pydicom.uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage == plan.MF_GRAYSCALE_WORD_SC
    assert pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage == plan.MF_TRUE_COLOR_SC


# ---------------------------------------------------------------- the rules can fail


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _write(files: Iterable[str]) -> dict[str, str]:
    return dict.fromkeys(files, "")


def test_a_deliberate_cycle_is_caught(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            **_write(["low/__init__.py", "high/__init__.py"]),
            "low/reader.py": "from ..errors import Oops\n",
            "high/runner.py": "from ..low.reader import read\n",
            # the mistake: the lower unit reaches up, through a function-local import
            "low/types.py": "def f():\n    from pkg.high import runner\n    return runner\n",
            "errors.py": "class Oops(Exception): ...\n",
        },
    )
    graph = unit_graph(root)
    assert graph == {"low": {"errors", "high"}, "high": {"low"}}
    assert cycles(graph) == [["high", "low"]]
    layers = (("high",), ("low",), ("errors",))
    assert layer_violations(graph, layers) == ["low -> high: imports up"]
    assert deferred_violations(root) == ["low/types.py: `pkg.high` imported inside a function"]


def test_siblings_and_unplaced_units_are_caught(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "a.py": "from . import b\n",
            "b.py": "",
            "c.py": "import pkg.a\n",
        },
    )
    graph = unit_graph(root)
    assert layer_violations(graph, (("a", "b"),)) == [
        "a -> b: imports sideways",
        "c -> a: not placed in LAYERS",
    ]
    assert cycles(graph) == []


def test_a_long_module_needs_its_reason(tmp_path: Path) -> None:
    body = "x = 1\n" * (MAX_LINES + 1)
    root = _package(
        tmp_path,
        {
            "long.py": body,
            "reasoned.py": '"""Over 400 lines on purpose: one table."""\n' + body,
        },
    )
    assert long_modules(root) == [f"long.py: {MAX_LINES + 1} lines, no reason at its top"]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_placed_unit_exists(layer: tuple[str, ...]) -> None:
    for unit in layer:
        assert (PACKAGE / f"{unit}.py").is_file() or (PACKAGE / unit / "__init__.py").is_file(), unit
