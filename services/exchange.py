"""What is wrong with an exchange file (the registry JSON, the schedule CSV), said precisely:
each problem names its line and field, so the centre fixes them all in one pass.

`parse_json_with_lines` parses JSON and remembers the line of every value, so a problem found
while validating the parsed document (`institutions[0].sites[1].code`) still names its line.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Enough to fix a file in one pass; a file with more is broken wholesale (wrong columns).
MAX_PROBLEMS = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong: `text` is the whole sentence (it starts with where), `line` the
    1-based line in the file when known, `field` the column or JSON path at fault, `detail`
    the sentence without the where (what the Chinese wording is made from)."""

    text: str
    line: int | None = None
    field: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "field": self.field,
            "message": self.text,
            "message_zh": self.text_zh(),
        }

    def text_zh(self) -> str:
        if self.detail is None:
            return self.text
        where = f"第 {self.line} 行" if self.line is not None else ""
        if self.field:
            where = f"{where}，{self.field}" if where else self.field
        said = in_chinese(self.detail)
        return f"{where}：{said}" if where else said


# The problems' wording in Chinese, by the English detail's pattern (the page is zh-CN first).
_ZH: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), zh)
    for p, zh in (
        (r"missing", "缺少该项"),
        (r"must not be empty", "不能为空"),
        (r"expected a string, found (.*)", r"应为字符串，实际为 \1"),
        (r"expected a list, found (.*)", r"应为列表，实际为 \1"),
        (r"expected an object, found (.*)", r"应为对象，实际为 \1"),
        (r"expected an object", "应为对象"),
        (r'expected an object with "institutions"', '应为包含 "institutions" 的对象'),
        (
            r"(.*) must be 1-64 letters, digits, '_', '\.' or '-'",
            r"\1 须为 1–64 个字母、数字或 _ . -",
        ),
        (r"(.*) appears twice in the file \(first at (.*)\)", r"\1 在文件中重复出现（首次在 \2）"),
        (r"(.*) already appears at (.*)", r"\1 重复，已在\2出现"),
        (r"not a YYYY-MM-DD date", "不是 YYYY-MM-DD 格式的日期"),
        (r"must be 'theory' or 'practical'", "须为 theory（理论）或 practical（实操）"),
        (
            r"a room needs at least (\d+) cameras \(front and back\), found (\d+)",
            r"每个考场至少需要 \1 台摄像机（前置和后置），实际为 \2 台",
        ),
        (r"(.*) is not an ISO 8601 / RFC 3339 date-time", r"\1 不是 ISO 8601 / RFC 3339 日期时间"),
        (r"(.*) has no time of day", r"\1 缺少具体时刻"),
        (r"(.*) is not between 2000 and 2100", r"\1 不在 2000 年至 2100 年之间"),
        (r"the sitting ends before it starts", "场次结束时间不晚于开始时间"),
        (r"the header lacks (.*)", r"表头缺少列：\1"),
        (r"more fields than the header names", "字段数多于表头的列数"),
        (r"not valid CSV \((.*)\)", r"不是有效的 CSV（\1）"),
        (r"unknown room (.*)", r"考场 \1 未登记"),
        (
            r"sitting (.*) overlaps (.*) \((.*)\) in room (.*)",
            r"场次 \1 与 \2（\3）在考场 \4 的时间重叠",
        ),
        (r"not valid JSON \((.*)\)", r"不是有效的 JSON（\1）"),
        (r"the JSON is nested too deeply", "JSON 嵌套层数过多"),
        (
            r"a number in the JSON is too long to read \((.*)\)",
            r"JSON 中的数字过长，无法读取（\1）",
        ),
        (r"must not contain control characters", "不得包含控制字符"),
        (r"not UTF-8 text \(byte (\d+)\)", r"不是 UTF-8 文本（第 \1 字节）"),
    )
]


# NUL (PostgreSQL text cannot hold it), the other C0 controls and DEL (terminal escapes, line
# breaks inside a name, CSV cells that start a formula after a tab or CR) and the bidirectional
# overrides (a name that reads differently than it sorts and compares). Imported names and
# words are shown on pages, in CSV files and in the ledger: none of these belongs in them.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def has_control_characters(value: str) -> bool:
    return CONTROL_CHARACTERS.search(value) is not None


def in_chinese(detail: str) -> str:
    """The detail in Chinese (the English as it is, for a wording not listed)."""
    for pattern, zh in _ZH:
        if pattern.fullmatch(detail):
            said = pattern.sub(zh, detail)
            said = re.sub(r"\bline (\d+)", r"第 \1 行", said)
            return said.replace("the database", "数据库中已有")
    return detail


def quoted(value: str, limit: int = 60) -> str:
    """`value` as Python quotes it, cut at `limit` characters: a 100 KB field in a refused file
    must not come back 200 times in the answer."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


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
