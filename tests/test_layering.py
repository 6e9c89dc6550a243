"""attnzoo's parts import one way: every import statement under attnzoo/ (including those inside
functions) agrees with the layering the README states, nothing imports the command line, and no private
timm or torch internals are imported where a public API exists."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "attnzoo"
# Bottom to top; a part may import only its own modules and the parts of lower layers. A part is a
# subpackage or top-level module of attnzoo; "attnzoo" is the package's own __init__ (its public names).
LAYERS = (
    ("errors", "version"),
    ("attention", "hub_client", "outputs"),
    ("surgery",),
    ("models",),
    ("data", "flops", "export"),
    ("hub",),
    ("loading",),
    ("train", "viz", "convert"),
    ("evaluate",),  # the leaderboard reads training run folders (their commit protocol)
    ("attnzoo",),
)
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}
# ``python -m attnzoo`` runs the command line: a program, never imported, so outside the library's layers.
ENTRY_POINT = PACKAGE / "__main__.py"
# Private internals imported because no public API offers them (module, why).
PRIVATE_ALLOWED = {
    "timm.models._efficientnet_blocks": "timm exports no public name for the EfficientNet block classes "
                                        "that surgery registers hooks for",
    "torch.nn.modules.module._global_forward_hooks": "torch has no public way to ask whether global forward "
                                                     "hooks exist, which in-place gating must know",
    "torch.nn.modules.module._global_forward_pre_hooks": "as _global_forward_hooks",
}


def layering_statement() -> str:
    """The README's wording of :data:`LAYERS`, top to bottom, with the command line on top."""
    layers = [layer[0] if len(layer) == 1 else f"({', '.join(layer)})" for layer in LAYERS]
    return " <- ".join([*layers, "attnzoo_cli"])


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``, relative ones resolved; ``from a import b`` gives
    ``a.b`` when ``b`` is a module of attnzoo, else ``a``."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                file = root / submodule.replace(".", "/")
                is_module = file.with_suffix(".py").is_file() or file.is_dir()
                found.append((node.lineno, submodule if is_module or alias.name.startswith("_") else module))
    return found


def part_of(module: str) -> str | None:
    """The attnzoo part that ``module`` belongs to, ``None`` outside attnzoo."""
    names = module.split(".")
    return None if names[0] != "attnzoo" else names[1] if len(names) > 1 else "attnzoo"


LIBRARY = sorted(path for path in PACKAGE.rglob("*.py") if path != ENTRY_POINT)


def layering_violations(paths: list[Path], rank: dict[str, int], root: Path = ROOT) -> list[str]:
    """``file:line imports module (part X may not import part Y)`` for every import against ``rank``."""
    violations = []
    for path in paths:
        own = part_of(module_name(path, root))
        for line, module in imported_modules(path, root):
            target = part_of(module)
            where = f"{path.relative_to(root)}:{line} imports {module}"
            if module.split(".")[0] == "attnzoo_cli":
                violations.append(f"{where} (nothing in attnzoo may import the command line)")
            elif target is not None and target != own and target not in rank:
                violations.append(f"{where} ({target} is in no layer: add it to LAYERS and the README)")
            elif target is not None and target != own and rank[target] >= rank[own]:
                violations.append(f"{where} ({own} may not import {target}, which is not below it)")
    return violations


def test_every_part_of_attnzoo_is_in_a_layer():
    parts = {part_of(module_name(path)) for path in LIBRARY}
    assert sorted(parts - set(RANK)) == []


def test_imports_follow_the_layers():
    assert layering_violations(LIBRARY, RANK) == []


def test_the_check_names_an_upward_import(tmp_path):
    """The check can fail: a models module importing the hub is reported by file, line and module."""
    fake = tmp_path / "attnzoo" / "models"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def load():\n    from attnzoo.hub import load_model\n", encoding="utf-8")
    assert layering_violations([fake / "bad.py"], RANK, tmp_path) == [
        "attnzoo/models/bad.py:2 imports attnzoo.hub (models may not import hub, which is not below it)"
    ]


def test_the_check_names_an_import_of_the_command_line(tmp_path):
    fake = tmp_path / "attnzoo" / "viz"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("import attnzoo_cli.options\n", encoding="utf-8")
    assert layering_violations([fake / "bad.py"], RANK, tmp_path) == [
        "attnzoo/viz/bad.py:1 imports attnzoo_cli.options (nothing in attnzoo may import the command line)"
    ]


def test_the_readme_states_the_layering_the_check_uses():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"Dependencies point one way: {layering_statement()}." in readme


def test_the_entry_point_only_starts_the_command_line_and_nothing_imports_it():
    assert [module for _, module in imported_modules(ENTRY_POINT)] == ["sys", "attnzoo_cli"]
    importers = [str(p) for p in LIBRARY if any(m == "attnzoo.__main__" for _, m in imported_modules(p))]
    assert importers == []


def test_no_private_timm_or_torch_internals_where_a_public_api_exists():
    private = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in LIBRARY
        for line, module in imported_modules(path)
        if module.split(".")[0] in ("timm", "torch", "torchvision")
        and any(name.startswith("_") and not name.startswith("__") for name in module.split("."))
        and module not in PRIVATE_ALLOWED
    ]
    assert private == []
