"""The layers show in the imports: routes translate HTTP and call the service; the service is the
only door to stored state and calls the engine and the store; protocol (the request and reply
shapes) sits beside them. Module-level imports are read from the source, so a shortcut fails here.
(A function-level import is a deliberate late binding, such as the default engine loader in
server/app.py, which keeps torch out of the HTTP layer's import.)"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "pure_model_api"
HEAVY = ("torch", "transformers", "llama_cpp", "vllm", "numpy")

# what each part may not import at module level
FORBIDDEN = {
    "server": [*HEAVY, "pure_model_api.engine.", "pure_model_api.conversations."],
    "protocol": [*HEAVY, "pure_model_api.server", "pure_model_api.service", "pure_model_api.engine.",
                 "pure_model_api.conversations."],
    "service.py": [*HEAVY, "pure_model_api.server", "fastapi", "starlette", "pure_model_api.engine."],
    "conversations": [*HEAVY, "pure_model_api.server", "pure_model_api.service", "pure_model_api.engine",
                      "pure_model_api.protocol", "fastapi"],
    "engine": ["pure_model_api.server", "pure_model_api.service", "pure_model_api.conversations", "fastapi",
               "starlette"],
}
# serving a GGUF file imports neither torch nor transformers: the llama.cpp engine and what it shares
NO_TORCH = ["torch", "transformers", "pure_model_api.engine.transformers", "pure_model_api.engine.vllm"]
for module in ("llamacpp", "base.py", "inference.py", "requests.py", "sampling.py", "params.py", "prompts.py",
               "text.py", "select.py", "loading.py", "structured.py"):
    FORBIDDEN[f"engine/{module}"] = NO_TORCH
# value types every layer shares, and the store's own package API
ALLOWED = ("pure_model_api.engine.params", "pure_model_api.conversations.history")


def module_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files_of(part: str) -> list[Path]:
    target = PACKAGE / part
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


def breaks(name: str, forbidden: list[str], own: str) -> bool:
    """A rule ending in "." forbids the package's modules (its own __init__ is its public face);
    any other forbids the module and everything under it."""
    if name.startswith(ALLOWED) or name.startswith(f"pure_model_api.{own}"):
        return False
    return any(name.startswith(rule) if rule.endswith(".") else name == rule or name.startswith(rule + ".")
               for rule in forbidden)


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_part_imports_only_what_its_layer_may(part):
    own = part.removesuffix(".py")
    found = [f"{path.relative_to(PACKAGE)}: {name}" for path in files_of(part) for name in module_imports(path)
             if breaks(name, FORBIDDEN[part], own)]
    assert not found, "\n".join(found)


def test_routes_reach_stored_state_only_through_the_service():
    for path in files_of("server/routes"):
        assert not re.search(r"\.store\b(?!_)", path.read_text().replace("body.store", "")), path.name
