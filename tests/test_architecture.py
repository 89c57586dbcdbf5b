"""The house stays the way docs/architecture.md draws it: imports run one way, SQL lives in the spool.

Read from the source (every import, including ones inside functions), so a rule broken anywhere in
the product code fails here with the file and line that broke it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.kits import REPO

PRODUCT = ("services", "agent", "handlers", "cli")
# Lower layers first. A module may import its own room and rooms of lower layers, never a room of
# its own layer or a higher one. This is the data path: the names say where a thing sits on it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("services._face",),
    ("services.domain",),
    ("services.config",),
    ("services.sealing", "services.audio"),
    ("services.backup",),
    ("services.spool",),
    ("services.capture", "services.shipping", "services.memory"),
    ("services.support", "services.privacy", "services.ops"),
    ("services.api",),
    ("handlers",),
    ("agent",),
    ("cli",),
)
MAX_LINES = 400
# SQL as we write it (upper-case keywords); prose such as "Select this file ... from" is not SQL.
SQL = re.compile(r"\b(SELECT\s[^;]*?\bFROM\b|INSERT\s+(OR\s+[A-Z]+\s+)?INTO|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX)|PRAGMA\s+\w+)")


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, and where."""

    source: Path
    line: int
    module: str  # the imported module, absolute ("voicelog." stripped)
    names: tuple[str, ...]


def product_files() -> list[Path]:
    files = [p for top in PRODUCT for p in (REPO / top).rglob("*.py")]
    return sorted(files + [REPO / "main.py"])


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield Import(path, node.lineno, node.module, tuple(a.name for a in node.names))


def ours(module: str) -> str | None:
    """The project module an import names (without "voicelog."), or None for third-party ones."""
    if module == "voicelog" or module.startswith("voicelog."):
        return module[len("voicelog."):]
    return None


def room_of(module: str) -> str:
    """The room a module belongs to: a services sub-package, or agent / handlers / cli."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def layer_of(room: str) -> int:
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    raise AssertionError(f"room {room} is not on the drawing: add it to LAYERS and docs/architecture.md")


def where(item: Import) -> str:
    return f"{item.source.relative_to(REPO)}:{item.line}"


def test_imports_run_down_the_layers_only():
    """No module imports a room of its own layer or above it (the data path runs one way)."""
    wrong = []
    for path in product_files():
        if path.name == "main.py":
            continue
        mine = room_of(module_of(path))
        for item in imports(path):
            target = ours(item.module)
            if target is None or room_of(target) == mine:
                continue
            if layer_of(room_of(target)) >= layer_of(mine):
                wrong.append(f"{where(item)}: {mine} imports {room_of(target)} ({item.module})")
    assert not wrong, "imports against the allowed direction:\n" + "\n".join(wrong)


def test_other_rooms_use_a_package_only_through_its_face():
    """A private module (``_name``) is imported only from inside its own package."""
    wrong = []
    for path in product_files():
        mine = module_of(path)
        for item in imports(path):
            target = ours(item.module)
            if target is None:
                continue
            parts = target.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_")]
            if not private:
                continue
            package = ".".join(parts[:private[0]])
            if not (mine == package or mine.startswith(package + ".")) and target != "services._face":
                wrong.append(f"{where(item)}: {item.module} is private to {package}")
    assert not wrong, "private modules used from outside their package:\n" + "\n".join(wrong)


def test_no_import_cycle_among_the_project_modules():
    """The module graph has no cycle: every import, also inside functions, through the faces."""
    graph: dict[str, set[str]] = {}
    known = {module_of(p) for p in product_files()}
    faces = face_rooms()
    for path in product_files():
        edges = graph.setdefault(module_of(path), set())
        for item in imports(path):
            target = ours(item.module)
            if target is None:
                continue
            for name in item.names or ("",):
                # A name taken from a face is an edge to the room that defines it.
                room = faces.get(target, {}).get(name)
                for candidate in (f"{target}.{room}" if room else "", f"{target}.{name}", target):
                    if candidate in known and candidate != module_of(path):
                        edges.add(candidate)
                        break
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def face_rooms() -> dict[str, dict[str, str]]:
    """For each lazy face: which of its rooms defines each public name."""
    found: dict[str, dict[str, str]] = {}
    for init in (REPO / "services").rglob("__init__.py"):
        for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "lazy_face":
                rooms = ast.literal_eval(node.args[1])
                found[module_of(init)] = {name: room for room, names in rooms.items() for name in names}
    return found


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_sql_and_sqlite_live_only_in_the_spool_package():
    """No SQL statement text and no sqlite3 import outside services/spool/."""
    wrong = []
    for path in product_files():
        if module_of(path).startswith("services.spool"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                if not _is_docstring(tree, node):
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: SQL text {node.value[:60]!r}")
        wrong += [f"{where(i)}: imports sqlite3" for i in imports(path) if i.module == "sqlite3"]
    assert not wrong, "SQL outside the spool package:\n" + "\n".join(wrong)


def _is_docstring(tree: ast.AST, constant: ast.Constant) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and body[0].value is constant:
                return True
    return False


def test_terminal_drawing_lives_in_cli_and_livekit_in_agent_and_handlers():
    """rich is imported only in cli/; livekit only in agent/ and handlers/; aiohttp never in the spool."""
    wrong = []
    for path in product_files():
        room = room_of(module_of(path))
        for item in imports(path):
            top = item.module.split(".")[0]
            if top == "rich" and room != "cli":
                wrong.append(f"{where(item)}: rich outside cli/")
            if top == "livekit" and room not in ("agent", "handlers"):
                wrong.append(f"{where(item)}: livekit outside agent/ and handlers/")
            if top == "aiohttp" and room in ("services.spool", "services.capture", "services.domain"):
                wrong.append(f"{where(item)}: aiohttp in {room}")
    assert not wrong, "\n".join(wrong)


def test_every_module_stays_under_the_size_that_asks_to_be_split():
    """No product module passes 400 lines."""
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in product_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "modules to split:\n" + "\n".join(long)


def test_every_services_package_shows_a_face():
    """Each sub-package of services/ has an ``__init__`` declaring its public names (``__all__``)."""
    missing = []
    for init in (REPO / "services").rglob("__init__.py"):
        if init.parent == REPO / "services":
            continue
        text = init.read_text(encoding="utf-8")
        if "__all__" not in text:
            missing.append(str(init.relative_to(REPO)))
    assert not missing, "packages without a face: " + ", ".join(missing)


def test_installing_voicelog_claims_no_generic_top_level_name():
    """The wheel installs everything under ``voicelog.``: no top-level agent/services/handlers/cli."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    assert all(p == "voicelog" or p.startswith("voicelog.") for p in setuptools["packages"])
    assert "py-modules" not in setuptools
    assert setuptools["package-dir"] == {"voicelog": "."}
    on_disk = {"voicelog." + module_of(p) for p in product_files() if p.name == "__init__.py"}
    assert on_disk <= set(setuptools["packages"]), f"not installed: {sorted(on_disk - set(setuptools['packages']))}"
