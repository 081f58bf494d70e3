"""The package's layers import one way, and no module imports another in a circle.

Every import is read from the source (module level and inside functions alike: a lazy import is still a
dependency) and resolved to the project module it names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "vla_razor": ROOT / "vla_razor",
    "vla_razor.envs": ROOT / "envs",
    "vla_razor.policies": ROOT / "policies",
}

LAYERS = [
    (
        "utilities",
        [
            "vla_razor",
            "vla_razor.errors",
            "vla_razor.atomic",
            "vla_razor.config",
            "vla_razor.progress",
            "vla_razor.runtime",
            "vla_razor.rundir",
            "vla_razor.seeding",
        ],
    ),
    ("divergence", ["vla_razor.divergence"]),
    (
        "envs, policies, data",
        [
            "vla_razor.envs",
            "vla_razor.policies",
            "vla_razor.data",
            "vla_razor.llm.model",
            "vla_razor.llm.tokenizer",
            "vla_razor.llm.tasks",
            "vla_razor.llm",
        ],
    ),
    (
        "evaluation and KL to the base",
        [
            "vla_razor.evaluation",
            "vla_razor.base_kl",
            "vla_razor.retention",
            "vla_razor.llm.kl",
            "vla_razor.llm.data",
        ],
    ),
    ("training harness", ["vla_razor.training", "vla_razor.harness", "vla_razor.llm.harness"]),
    (
        "algorithms",
        [
            "vla_razor.rl",
            "vla_razor.sft",
            "vla_razor.pretrain",
            "vla_razor.algorithms",
            "vla_razor.llm.finetune",
            "vla_razor.llm.grpo",
            "vla_razor.llm.sft",
            "vla_razor.llm.pretrain",
        ],
    ),
    ("analysis and the main job", ["vla_razor.analysis", "vla_razor.llm.razor", "vla_razor.quickstart"]),
    ("commands", ["vla_razor.commands", "vla_razor.cli"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if not any(
                name.startswith(other + ".")
                for other in SOURCES
                if other != package and other.startswith(package)
            ):
                found[name] = path
    return found


def layer_of(module: str) -> int:
    best, level = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    if level is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it")
    return level


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b) > layer_of(a) and not a.startswith(b + ".")
    )


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, over every written import: a package's ``__init__`` importing its
    own submodules runs them, and a submodule importing names from its own package needs that ``__init__``
    done, so both are followed (only the implicit import of a submodule's package is not an edge)."""

    def edges(a):
        return sorted(graph.get(a, ()))

    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(a):
        state[a] = 1
        stack.append(a)
        for b in edges(a):
            if state.get(b) == 1:
                circles.append(stack[stack.index(b) :] + [b])
            elif b not in state:
                visit(b)
        stack.pop()
        state[a] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return circles


def test_every_module_is_in_a_layer_and_imports_only_its_own_layer_or_lower():
    upward = upward_imports(GRAPH)
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_import_circle():
    circles = find_circles(GRAPH)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_walker_sees_circles_and_upward_imports():
    assert find_circles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [["a.x", "a.y", "a.z", "a.x"]]
    assert find_circles({"a": {"a.x"}, "a.x": set()}) == []  # a package importing its submodule
    assert find_circles({"a": {"a.x"}, "a.x": {"a"}}) == [["a", "a.x", "a"]]  # ... which imports it back
    # through a package's __init__: base -> lerobot (its __init__ imports .flow) -> lerobot.flow -> base
    circle = {"p.base": {"p.lerobot"}, "p.lerobot": {"p.lerobot.flow"}, "p.lerobot.flow": {"p.base"}}
    assert find_circles(circle) == [["p.base", "p.lerobot", "p.lerobot.flow", "p.base"]]
    assert upward_imports({"vla_razor.divergence.kl": {"vla_razor.harness"}}) == [
        "vla_razor.divergence.kl (divergence) imports vla_razor.harness (training harness)"
    ]
    # the real graph is read: relative imports resolved, lazy ones included
    assert "vla_razor.policies.base" in GRAPH["vla_razor.policies.flow.modeling_flow"]
    assert "vla_razor.algorithms" in GRAPH["vla_razor.commands.finetune"]  # an import inside a function


UTILITIES = set(LAYERS[0][1]) - {"vla_razor"}
LIGHT = {"yaml", "numpy", "tabulate", "jinja2", "tqdm"}


def needless_lazy_imports(source: str, module: str) -> list[str]:
    """Imports inside functions that gain nothing there: the standard library, light libraries, the
    utilities layer (from above it), or a module the file already imports at its top. What stays inside a
    function is heavy (torch, ManiSkill through ``vla_razor.envs``, transformers, matplotlib, LeRobot) or
    optional (inside ``try``)."""
    tree = ast.parse(source)
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            top.add(node.module)
    guarded = {
        id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for stmt in t.body for n in ast.walk(stmt)
    }
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if (
                    (root in sys.stdlib_module_names and root != "__future__")
                    or root in LIGHT
                    or (name in UTILITIES and module not in UTILITIES)
                    or name in top
                ):
                    found.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    return found


def test_imports_inside_functions_are_only_of_heavy_or_optional_modules():
    found = [
        line for name, path in modules().items() for line in needless_lazy_imports(path.read_text(), name)
    ]
    assert not found, "move these to the module's top:\n" + "\n".join(found)


def test_the_lazy_import_check_flags_what_it_should():
    source = (
        "import torch\n"
        "def f():\n    import json\n    import torch\n    from vla_razor.errors import ConfigError\n"
        "    import matplotlib.pyplot as plt\n"
        "    try:\n        import lerobot\n    except ImportError:\n        pass\n"
    )
    found = needless_lazy_imports(source, "vla_razor.analysis.x")
    assert [line.split(" ", 1)[1] for line in found] == [
        "import json",
        "import torch",
        "from vla_razor.errors import ConfigError",
    ]


@pytest.mark.parametrize(
    "low, above",
    [
        ("vla_razor.divergence", "vla_razor.policies"),
        ("vla_razor.config", "torch"),
        ("vla_razor.policies", "vla_razor.harness"),
        ("vla_razor.harness", "vla_razor.rl"),
    ],
)
def test_importing_a_low_layer_loads_nothing_above_it(low, above):
    code = f"import sys, {low}; print({above!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"importing {low} loaded {above}"


def test_the_policy_base_and_package_import_no_family_modeling_and_nothing_of_lerobot():
    code = (
        "import sys, vla_razor.policies.base, vla_razor.policies; "
        "print(sorted(m for m in sys.modules if '.modeling_' in m or m.split('.')[0] == 'lerobot'"
        " or m.endswith('lerobot.flow_chain') or m.endswith('lerobot.common')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing the policy package loaded {done.stdout.strip()}"


def test_every_family_builds_through_the_factory_alone():
    from vla_razor.policies import FAMILIES, make_policy, policy_class

    assert set(FAMILIES) == {
        "flow",
        "diffusion",
        "gaussian",
        "lerobot_diffusion",
        "lerobot_pi0",
        "lerobot_pi05",
        "lerobot_smolvla",
    }
    for name in ("flow", "diffusion", "gaussian"):
        assert make_policy(name).family == name
    for (
        name,
        family,
    ) in FAMILIES.items():  # every modeling class resolves (LeRobot is imported only when used)
        assert policy_class(name).family == name and policy_class(name).config_class is family.config_class
