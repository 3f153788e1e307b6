"""Cache fingerprints of the code a component runs.

TFX's cache key sees a component's inputs and execution properties, not the code behind a
``run_fn`` or ``preprocessing_fn`` path or a custom executor: without more, an edited Trainer
would be served from the cache. Each such component gets ``source_fingerprint``: a hash of the
modules it runs and every project module they import, transitively (imports inside functions
included). Editing a module re-runs exactly the components whose code imports it: editing the
recommend client re-trains nothing, editing the ScaNN index code re-runs the indexer.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from typing import Callable, Iterable, Optional

PACKAGE = "recsys_pipeline"


@functools.lru_cache(maxsize=None)
def _spec(name: str):
    """The import spec of project module ``name``, or None if it is not one.

    Nothing is imported but the (one-line) ``__init__`` of the packages on the way: a name is
    looked up only inside a package, never as an attribute of a module.
    """
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    if "." in name:
        parent = _spec(name.rsplit(".", 1)[0])
        if parent is None or parent.submodule_search_locations is None:
            return None
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _module_file(name: str) -> Optional[str]:
    """The source file of project module ``name``, or None if it is not one."""
    spec = _spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _imports(module: str, source: str) -> set[str]:
    """Project modules that ``source`` (of ``module``) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # ``from package import module`` imports a module, not only a name.
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if _module_file(name)}


def _sources(modules: Iterable[str]) -> dict[str, str]:
    """{module: source} of ``modules`` and every project module they import, transitively."""
    sources: dict[str, str] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in sources:
            continue
        path = _module_file(name)
        if path is None:
            raise ValueError(f"{name} is not a module of {PACKAGE}")
        sources[name] = read_source(path)
        todo += sorted(_imports(name, sources[name]) - set(sources))
    return sources


def closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every project module they import, transitively, sorted."""
    return sorted(_sources(modules))


def code_fingerprint(modules: Iterable[str]) -> str:
    """16 hex digits over the sources of ``closure(modules)`` (each file read once)."""
    h = hashlib.sha256()
    for name, source in sorted(_sources(modules).items()):
        h.update(name.encode() + b"\0" + source.encode() + b"\0")
    return h.hexdigest()[:16]


def module_of(path: str) -> str:
    """``package.module`` of a ``package.module.function`` import path."""
    return path.rsplit(".", 1)[0]


# How sources are read; tests substitute an edited module's text here.
read_source: Callable[[str], str] = _read
