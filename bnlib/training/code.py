"""Which bnlib code a run executes, and a hash of that code for the run's cache key.

Modules are named by their dotted path inside bnlib (``"training.loop"``, ``"nn.batchnorm"``,
``"models"``); a package stands for its ``__init__.py`` (``"training"``) and the package root
is ``"__init__"``. :func:`run_modules` starts from the modules every run executes
(:data:`CORE_MODULES`), the modules that define the model's layers and the probes, and follows
their top-level ``bnlib`` imports (absolute or relative, packages and subpackages) to a fixed
point. :func:`code_version` hashes those modules' syntax trees without docstrings, so a change
to any code a run executes changes its key, and a documentation change does not.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from torch import nn

from bnlib.training.config import RunConfig

__all__ = ["CORE_MODULES", "PACKAGE_DIR", "code_fingerprint", "code_version", "module_imports",
           "module_path", "run_modules"]

#: The bnlib folder whose files are hashed (tests point it at a fake package).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Modules every run executes, whatever its layers and probes (their imports are followed).
CORE_MODULES = ("__init__", "training", "models", "data", "settings")


def module_path(name: str, package: Path | None = None) -> Path | None:
    """The file of bnlib module ``name`` (``"a.b"``: ``a/b.py`` or ``a/b/__init__.py``), or
    None if there is none."""
    package = package or PACKAGE_DIR
    if name == "__init__":
        path = package / "__init__.py"
        return path if path.is_file() else None
    base = package.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parents(name: str) -> list[str]:
    """The packages importing ``name`` runs first: ``"a.b.c"`` -> ``["__init__", "a", "a.b"]``."""
    parts = name.split(".")
    return ["__init__"] + [".".join(parts[:i]) for i in range(1, len(parts))]


def module_imports(name: str, source: str, package: Path | None = None) -> set[str]:
    """The bnlib modules that module ``name`` (whose text is ``source``) imports at its top level.

    ``from bnlib.x import y`` and ``from .x import y`` count ``x`` and, when ``y`` is a module
    itself, ``x.y``; imports inside functions are lazy and count only when a run's layers or
    probes come from the module they name.
    """
    is_package = name == "__init__" or (module_path(name, package) or Path()).name == "__init__.py"
    here = [] if name == "__init__" else name.split(".")
    if not is_package:
        here = here[:-1]
    found: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            found.update(a.name.removeprefix("bnlib.") for a in node.names if a.name.startswith("bnlib."))
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            anchor = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = ".".join(anchor + (node.module.split(".") if node.module else []))
        elif node.module and (node.module == "bnlib" or node.module.startswith("bnlib.")):
            target = node.module.removeprefix("bnlib").lstrip(".")
        else:
            continue
        found.add(target or "__init__")
        for alias in node.names:
            candidate = f"{target}.{alias.name}" if target else alias.name
            if module_path(candidate, package) is not None:
                found.add(candidate)
    return {module for module in found if module}


def run_modules(model: nn.Module | RunConfig, probes: Iterable[object] = (),
                package: Path | None = None) -> tuple[str, ...]:
    """The bnlib modules a run of ``model`` (or of a :class:`RunConfig`'s model) with ``probes``
    executes, sorted: :data:`CORE_MODULES`, the modules of the model's layers and of the probes,
    their parent packages, and everything those import at top level."""
    if isinstance(model, RunConfig):
        model = model.build_model()
    classes = [type(m) for m in model.modules()] + [type(p) for p in probes]
    wanted = set(CORE_MODULES) | {
        c.__module__.removeprefix("bnlib.") for c in classes if c.__module__.startswith("bnlib.")
    }
    pending, seen = list(wanted), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending.extend(set(_parents(module)) - seen)
        path = module_path(module, package)
        if path is not None:
            pending.extend(module_imports(module, path.read_text(), package) - seen)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=512)
def code_fingerprint(source: str) -> str:
    """A module's code without its docstrings, comments and layout (a dump of its syntax tree),
    so that editing documentation does not throw cached results away. Memoised on the source
    text itself: every run's cache key fingerprints the same few dozen unchanged modules."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def code_version(modules: Sequence[str], package: Path | None = None) -> str:
    """SHA-256 over the code (docstrings and comments excluded) of the given bnlib modules
    (a module without a file hashes as absent)."""
    digest = hashlib.sha256()
    for module in modules:
        path = module_path(module, package)
        digest.update(module.encode() + b"\0")
        digest.update(code_fingerprint(path.read_text()).encode() if path is not None else b"<absent>")
        digest.update(b"\0")
    return digest.hexdigest()
