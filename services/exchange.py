"""What is wrong with an exchange file (the registry JSON, the schedule CSV), said precisely:
each problem names its line and field, so the centre fixes them all in one pass.

`parse_json_with_lines` parses JSON and remembers the line of every value, so a problem found
while validating the parsed document (`institutions[0].sites[1].code`) still names its line.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Enough to fix a file in one pass; a file with more is broken wholesale (wrong columns).
MAX_PROBLEMS = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong: `text` is the whole sentence (it starts with where), `line` the
    1-based line in the file when known, `field` the column or JSON path at fault."""

    text: str
    line: int | None = None
    field: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "message": self.text}


def summary_text(problems: list[Problem]) -> str:
    """The problems as one message: all of them, up to a few, then how many more."""
    shown = [problem.text for problem in problems[:5]]
    if len(problems) > 5:
        shown.append(f"and {len(problems) - 5} more problem(s)")
    return "; ".join(shown)


@dataclass
class JsonLines:
    """Lines of a parsed document's values, by the identity of their container."""

    starts: dict[int, int]  # id(container) -> line of its opening bracket
    members: dict[int, dict[Any, int]]  # id(dict) -> key -> line; id(list) -> index -> line

    def of(self, container: object, member: object = None) -> int | None:
        lines = self.members.get(id(container), {})
        if member is not None and member in lines:
            return lines[member]
        return self.starts.get(id(container))


def parse_json_with_lines(text: str) -> tuple[Any, JsonLines]:
    """json.loads, plus the line of every object member and array element. Raises
    json.JSONDecodeError as json.loads does. Pure Python scanning: keep inputs bounded."""
    newlines = [i for i, char in enumerate(text) if char == "\n"]

    def line_at(position: int) -> int:
        return bisect_right(newlines, position - 1) + 1

    starts: dict[int, int] = {}
    members: dict[int, dict[Any, int]] = {}
    keep: list[object] = []  # containers stay alive, so their ids stay theirs

    def recording(scan_once: Callable[[str, int], Any], into: list[int]) -> Callable[..., Any]:
        def scan(string: str, index: int) -> Any:
            into.append(index)
            return scan_once(string, index)

        return scan

    decoder = json.JSONDecoder()

    def parse_object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, *rest: Any) -> Any:
        positions: list[int] = []
        result, end = json.decoder.JSONObject(
            s_and_end, strict, recording(scan_once, positions), None, list, *rest[2:]
        )
        document = dict(result)
        keep.append(document)
        starts[id(document)] = line_at(s_and_end[1] - 1)
        members[id(document)] = {
            key: line_at(position) for (key, _), position in zip(result, positions, strict=False)
        }
        return document, end

    def parse_array(s_and_end: tuple[str, int], scan_once: Any) -> Any:
        positions: list[int] = []
        values, end = json.decoder.JSONArray(s_and_end, recording(scan_once, positions))
        keep.append(values)
        starts[id(values)] = line_at(s_and_end[1] - 1)
        members[id(values)] = {i: line_at(p) for i, p in enumerate(positions)}
        return values, end

    decoder.parse_object = parse_object  # type: ignore[assignment]
    decoder.parse_array = parse_array  # type: ignore[assignment]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[assignment]
    document = decoder.decode(text)
    return document, JsonLines(starts, members)
