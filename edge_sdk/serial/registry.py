"""Constraints registered on a serial line: small ids for checked, compiled constraints, bounded in number and size.

A board declares what it may be told once, after it connects: REGISTER with an id and a JSON Schema, a list
of choices, a regex or a Lark grammar. The registry has the model compile it at once
(`Model.compile_constraint`, which also caches the compiled form), so a constraint the engine refuses is an
ERROR before any generation and a GENERATE or CHAT that names the id later starts without compiling. What a
GENERATE gets back for an id is the keyword arguments `Model.stream` takes for that constraint.

Bounds, per line (a line whose reads failed and came back is a new connection and starts empty):
`max_constraints` ids at most (16 by default) and `max_size` bytes of constraint text each (4096: the
schema's JSON, the regex, the grammar, or all choices together, in UTF-8). Registering an id that is held
replaces it, so a board that resets declares its constraints again without unregistering; a REGISTER that
fails leaves the id as it was.

    >>> reg = ConstraintRegistry(max_constraints=2)
    >>> reg.register(model, 1, "choices", ["left", "right"])      # doctest: +SKIP
    >>> reg.lookup(1)                                              # doctest: +SKIP
    {'choices': ['left', 'right']}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, InvalidArgumentError
from .protocol import ErrorCode

MAX_CONSTRAINTS = 16
MAX_CONSTRAINT_SIZE = 4096

_SCHEMA_FIELD = "response_format.json_schema.schema"  # how Model.compile_constraint names a schema in its errors


class Refused(Exception):
    """A registration or lookup that the line must answer with ERROR `code`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Registered:
    kind: str  # json_schema | choices | regex | grammar
    args: dict[str, Any]  # the keyword arguments of Model.stream for it
    size: int  # bytes of its text


def _size(value: str | list[str]) -> int:
    return sum(len(v.encode("utf-8")) for v in ([value] if isinstance(value, str) else value))


def _args(cid: int, kind: str, value: str | list[str]) -> dict[str, Any]:
    if kind != "json_schema":
        return {kind: value}
    try:
        schema = json.loads(value)
    except (ValueError, RecursionError) as e:
        raise Refused(ErrorCode.BAD_CONSTRAINT, f"constraint {cid} (json_schema): not JSON: {e}") from None
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": f"constraint_{cid}", "schema": schema, "strict": True}}}


class ConstraintRegistry:
    """The constraints one line holds, by id (1..255)."""

    def __init__(self, max_constraints: int = MAX_CONSTRAINTS, max_size: int = MAX_CONSTRAINT_SIZE) -> None:
        for name, v in (("max_constraints", max_constraints), ("max_constraint_size", max_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"{name} must be an int >= 1, got {v!r}")
        self.max_constraints = max_constraints
        self.max_size = max_size
        self._held: dict[int, Registered] = {}

    def __len__(self) -> int:
        return len(self._held)

    def ids(self) -> list[int]:
        return sorted(self._held)

    def register(self, model: Any, cid: int, kind: str, value: str | list[str]) -> None:
        """Check the bounds, compile through `model`, then hold it under `cid`; Refused says why not."""
        size = _size(value)
        if size > self.max_size:
            raise Refused(ErrorCode.CONSTRAINT_LIMIT, f"constraint {cid} ({kind}) is {size} bytes; this server takes "
                                                      f"at most {self.max_size} bytes per constraint")
        if cid not in self._held and len(self._held) >= self.max_constraints:
            raise Refused(ErrorCode.CONSTRAINT_LIMIT, f"this line holds {len(self._held)} constraints (ids "
                                                      f"{', '.join(map(str, self.ids()))}), the most this server "
                                                      "takes; unregister one or reuse an id")
        args = _args(cid, kind, value)
        compile_constraint = getattr(model, "compile_constraint", None)
        if compile_constraint is None:
            raise Refused(ErrorCode.UNSUPPORTED, "this server's model cannot apply constraints")
        try:
            compile_constraint(**args)
        except InvalidArgumentError as e:
            text = str(e)
            if text.startswith(_SCHEMA_FIELD):
                text = "the schema" + text[len(_SCHEMA_FIELD):]
            raise Refused(ErrorCode.BAD_CONSTRAINT, f"constraint {cid} ({kind}): {text}") from None
        except BackendError as e:  # the engine is not installed on this board
            raise Refused(ErrorCode.UNSUPPORTED, str(e)) from None
        self._held[cid] = Registered(kind, args, size)

    def unregister(self, cid: int | None) -> None:
        """Drop `cid`, or every constraint for None."""
        if cid is None:
            self._held.clear()
        elif self._held.pop(cid, None) is None:
            raise self._unknown(cid)

    def lookup(self, cid: int) -> dict[str, Any]:
        """The keyword arguments of `Model.stream` for `cid` (a copy)."""
        held = self._held.get(cid)
        if held is None:
            raise self._unknown(cid)
        return dict(held.args)

    def clear(self) -> None:
        self._held.clear()

    def _unknown(self, cid: int) -> Refused:
        have = f"ids {', '.join(map(str, self.ids()))}" if self._held else "none"
        return Refused(ErrorCode.UNKNOWN_CONSTRAINT, f"constraint {cid} is not registered on this line (held: {have})")
