"""Trick facts read from the source, without importing it (so without torch): what `tricks list`
shows next to each trick option. The facts themselves are class attributes of each trick
(runner.hooks: `order`, `figures`, `noop`, `noop_exact`, `passes`); tests/test_trick_facts.py
checks that this reading equals the imported classes' values.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache

from runner.config import trick_target

#: what the static reading keeps (literal class attributes)
STATIC = ("order", "figures", "noop", "noop_exact", "passes", "stackable", "stack_keys")
#: the Trick base class's `order` (runner.hooks.Trick.order), for a class that declares none
BASE_ORDER = 50


@cache
def _module_classes(module: str) -> dict:
    """{class name: (base names, {attribute: literal value})} of a module's top-level classes."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return {}
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:  # a base class imported from another module
                out[a.asname or a.name] = ("import", node.module, a.name)
        if not isinstance(node, ast.ClassDef):
            continue
        attrs = {}
        for st in node.body:
            target = (
                st.targets[0]
                if isinstance(st, ast.Assign) and len(st.targets) == 1
                else st.target
                if isinstance(st, ast.AnnAssign)
                else None
            )
            if isinstance(target, ast.Name) and target.id in STATIC and st.value is not None:
                try:
                    attrs[target.id] = ast.literal_eval(st.value)
                except ValueError:
                    pass
        out[node.name] = ([b.id for b in node.bases if isinstance(b, ast.Name)], attrs)
    return out


def static_facts(target: str) -> dict:
    """The literal facts of the class `target` names (module.Class), following its bases within
    its module; {} when the module cannot be read."""
    module, _, name = target.rpartition(".")
    try:
        classes = _module_classes(module)
    except (ImportError, OSError, SyntaxError, ValueError):
        return {}
    facts: dict = {}
    seen = set()
    while name in classes and (module, name) not in seen:
        seen.add((module, name))
        entry = classes[name]
        if entry[0] == "import":
            module, name = entry[1], entry[2]
            try:
                classes = _module_classes(module)
            except (ImportError, OSError, SyntaxError, ValueError):
                break
            continue
        bases, attrs = entry
        facts = {**attrs, **facts}
        name = bases[0] if bases else ""
    if facts or seen:
        facts.setdefault("order", BASE_ORDER)
    return facts


def summary(target: str | None) -> str:
    """e.g. "[2 passes, order 70]" for `tricks list`; "" when nothing is known."""
    f = static_facts(target) if target else {}
    if not f:
        return ""
    passes = f.get("passes")
    if not isinstance(passes, str) or not passes:
        return f"[order {f['order']}]"
    head = passes.split(" ")[0]  # "2 (one doubled batch)" -> 2; the details: the README's table
    return f"[{head} {'pass' if head == '1' else 'passes'}, order {f['order']}]"


def trick_class(group: str, option: str):
    """The class a trick option's config names (imports it); None for an option without one
    (clip=none)."""
    target = trick_target(group, option)
    if target is None:
        return None
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)
