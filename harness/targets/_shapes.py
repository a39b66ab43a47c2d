"""Command shapes: what a target accepts, so that the harness sends nothing else.

A target declares what it accepts in the reference's vocabulary (``reference._surface``: a
command name and its forms, such as ``("DEL", "several")``, ``("SET", "EX")``,
``("LPOP", "count")``, ``("EXPIRE", "past")``), with an optional ``shapes`` attribute holding a
``CommandShapes``: the command names it implements and, per command, the forms it accepts (a
command not listed there: every form). Without ``shapes``, its ``commands`` attribute (names
only) is the declaration, and without either it accepts everything. An ``accepts(argv)``
predicate, when the target has one, narrows any of these further (``accepts_of``).

SELECT and MULTI follow the same declaration: a target whose names leave out SELECT has one
keyspace and is never sent SELECT; one that leaves out MULTI (or EXEC) is never sent a
transaction. Every generator (fuzz's rules, explore's workloads, the pytest plugin's state
machine) sends only what ``accepts_of(target)`` allows, and the oracle judges a write whose
reply a crash lost as possibly refused where the target could refuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reference._surface import WRITE_SURFACE, command_forms

__all__ = ["CommandShapes", "accepts_of", "shapes_of"]


def _name(item: str | bytes) -> str:
    return (item.decode("latin-1") if isinstance(item, bytes) else str(item)).upper()


@dataclass(frozen=True)
class CommandShapes:
    """What a target accepts (see the module docstring).

    ``commands``: the upper-case names it implements (str or bytes; None: every command).
    ``forms``: per command name, the forms of ``reference._surface.WRITE_SURFACE`` it accepts
    (a name not listed: every form), e.g. ``{"DEL": {"one"}, "SET": {"plain", "NX", "XX"}}``
    for single-key DEL and SET without expiry options. Invalid names or forms raise
    ValueError listing every problem at once.
    """

    commands: frozenset[str] | None = None
    forms: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        commands = None if self.commands is None else frozenset(
            _name(c) for c in self.commands)
        forms = {_name(name): frozenset(str(f) for f in allowed)
                 for name, allowed in dict(self.forms).items()}
        problems = []
        for name, allowed in sorted(forms.items()):
            known = WRITE_SURFACE.get(name)
            if known is None:
                problems.append(f"forms: {name} has no forms in the surface table (known: "
                                f"{', '.join(sorted(WRITE_SURFACE))})")
                continue
            unknown = sorted(allowed - set(known))
            if unknown:
                problems.append(f"forms: {name} has no form {', '.join(unknown)} (known: "
                                f"{', '.join(known)})")
            if commands is not None and name not in commands:
                problems.append(f"forms: {name} is not among the commands")
        if problems:
            raise ValueError("CommandShapes: " + "; ".join(problems))
        object.__setattr__(self, "commands", commands)
        object.__setattr__(self, "forms", forms)

    def allows(self, argv: Sequence[bytes]) -> bool:
        """Whether a command line has a declared name and only declared forms."""
        if not argv:
            return False
        name = _name(argv[0])
        if self.commands is not None:
            if name not in self.commands:
                return False
            if name == "EXEC" and "MULTI" not in self.commands:
                return False
        allowed = self.forms.get("MULTI" if name == "EXEC" else name)
        if allowed is None:
            return True
        return all(form in allowed for _, form in command_forms(argv))

    def to_dict(self) -> dict[str, Any]:
        return {"commands": None if self.commands is None else sorted(self.commands),
                "forms": {name: sorted(allowed) for name, allowed in sorted(self.forms.items())}}


def shapes_of(target: object) -> CommandShapes:
    """The target's declaration: its ``shapes`` (with ``commands`` as its names when the
    shapes name none), else its ``commands``, else everything."""
    declared = getattr(target, "shapes", None)
    commands: Iterable[str | bytes] | None = getattr(target, "commands", None)
    if isinstance(declared, CommandShapes):
        if declared.commands is None and commands is not None:
            return CommandShapes(commands=frozenset(_name(c) for c in commands),
                                 forms=declared.forms)
        return declared
    if commands is None:
        return CommandShapes()
    return CommandShapes(commands=frozenset(_name(c) for c in commands))


def accepts_of(target: object) -> Callable[[Sequence[bytes]], bool]:
    """The predicate every generator filters its command lines with: the declaration
    (``shapes_of``) and the target's own ``accepts(argv)`` when it has one."""
    shapes = shapes_of(target)
    own = getattr(target, "accepts", None)
    if not callable(own):
        return shapes.allows

    def accepts(argv: Sequence[bytes]) -> bool:
        return shapes.allows(argv) and bool(own(tuple(argv)))

    return accepts
