"""Mutation score of the pure rules: how many small changes to each rule its own tests catch.

`python -m bench.mutation` (`make mutate`) runs mutmut over each pure module with only that
module's fast tests (no database, no video, no conftest: `--noconftest` makes a test that needs a
fixture fail loudly instead of quietly pulling in a database). Each module runs in a snapshot of
the tree under a temporary directory, so mutmut's `mutants/` copy never lands in the checkout and
edits made meanwhile cannot leak into a run. One mutant at a time (`--max-children 1`).

A mutant counts as killed when its tests fail, hang (timeout) or crash. Mutants that cannot
change behaviour are listed in EQUIVALENT with the reason and left out of the score; every other
survivor is written out (file, line, original and mutated line) for someone to kill with a test.
Target: 90 % killed in each module. Results go to bench/results/mutation.json with the machine,
the tool and its version; `--module` reruns some modules and keeps the others' figures.

mutmut mutates code inside functions and methods only, not module-level constants.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.machine import cpu_model, filesystem_of

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
TARGET_KILLED = 0.90
# A mutant is stopped (and counted as killed: it hangs) after this many times its tests' clean
# time plus a second; mutmut's 15 spends minutes on each endless loop, and nothing here is slow.
TIMEOUT_MULTIPLIER = 4
# Generous: a healthy run of one module takes a few minutes on a shared 2-core machine.
RUN_TIMEOUT_S = 3600

# The pure rules and the tests that pin each one down.
MODULES: dict[str, tuple[str, ...]] = {
    "storage/merkle.py": ("tests/storage/test_merkle.py",),
    "services/coverage/rule.py": ("tests/coverage/test_rule.py",),
    "services/retention/expiry.py": ("tests/retention/test_expiry.py",),
}
# Hold scopes may move into a pure module of their own: any module here whose imports and whose
# tests/retention/test_<name>.py imports are pure (see _is_pure) is measured too.
DISCOVER_IN = "services/retention"

# (module, function, mutated line) -> why the mutant cannot change what the function returns.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("services/coverage/rule.py", "span_coverage", "if end >= cursor:"): (
        "when end == cursor the assignment cursor = end changes nothing"
    ),
}

# mutmut's exit codes per status (mutmut.stats.status_by_exit_code); unknown ones are suspicious.
_STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    None: "not checked",
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}
_DETECTED = {"killed", "timeout", "segfault"}
# Imports a pure rule or its tests may make besides the standard library and other pure rules.
_PURE_TEST_IMPORTS = {"pytest", "hypothesis"}
# A pytest plugin for the mutant runs only: one failing example kills a mutant, so hypothesis
# need not spend seconds shrinking it to the smallest one.
_HYPOTHESIS_PLUGIN = """from hypothesis import Phase, settings

settings.register_profile(
    "mutation", phases=(Phase.explicit, Phase.reuse, Phase.generate), print_blob=False
)
settings.load_profile("mutation")
"""
_PYTEST_ARGS = ["--noconftest", "-p", "no:cacheprovider", "-p", "mutation_hypothesis"]
_MUTANT_NAME = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ)?_?(?P<func>\w+?)__mutmut_\d+$")


@dataclass
class Mutant:
    name: str
    status: str
    function: str
    line: int | None = None
    original: str = ""
    mutated: str = ""


def pure_modules() -> dict[str, tuple[str, ...]]:
    """MODULES plus any pure module found in DISCOVER_IN that has a pure test module."""
    modules = dict(MODULES)
    known = {path.removesuffix(".py").replace("/", ".") for path in modules}
    for source in sorted((REPO / DISCOVER_IN).glob("*.py")):
        relative = source.relative_to(REPO).as_posix()
        test = REPO / "tests" / Path(DISCOVER_IN).relative_to("services") / f"test_{source.name}"
        if relative in modules or source.name == "__init__.py" or not test.exists():
            continue
        if _is_pure(source, known) and _is_pure(test, known | {relative_module(relative)}):
            modules[relative] = (test.relative_to(REPO).as_posix(),)
    return modules


def relative_module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _is_pure(path: Path, allowed: set[str]) -> bool:
    """True when every import is the standard library, pytest, hypothesis or a pure rule."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if not (top in sys.stdlib_module_names or top in _PURE_TEST_IMPORTS or name in allowed):
                return False
    return True


def snapshot(work: Path, module: str, tests: tuple[str, ...]) -> None:
    """The packages and tests as they are now, with a mutmut config for this one module."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("storage", "services", "tests"):
        shutil.copytree(REPO / package, work / package, ignore=ignore)
    (work / "mutation_hypothesis.py").write_text(_HYPOTHESIS_PLUGIN, encoding="utf-8")
    config = [
        "[tool.mutmut]",
        'source_paths = ["storage", "services"]',
        f"only_mutate = [{json.dumps(module)}]",
        'also_copy = ["mutation_hypothesis.py"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(list(tests))}",
        f"pytest_add_cli_args = {json.dumps(_PYTEST_ARGS)}",
        "use_git_change_detection = false",
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}",
        "",
        "[tool.pytest.ini_options]",
        'testpaths = ["tests"]',
        "",
    ]
    (work / "pyproject.toml").write_text("\n".join(config), encoding="utf-8")


def run_mutmut(work: Path, log: Path) -> float:
    mutmut = Path(sys.executable).with_name("mutmut")
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as output:
        completed = subprocess.run(
            [str(mutmut), "run", "--max-children", "1"],
            cwd=work,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    if completed.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"mutmut run exited {completed.returncode} in {work}:\n{tail}")
    return time.perf_counter() - started


def read_mutants(work: Path, module: str) -> list[Mutant]:
    meta = json.loads((work / "mutants" / f"{module}.meta").read_text(encoding="utf-8"))
    mutants = []
    for name, exit_code in sorted(meta["exit_code_by_key"].items(), key=_mutant_order):
        status = _STATUS_BY_EXIT_CODE.get(exit_code, "suspicious")
        mutants.append(Mutant(name=name, status=status, function=function_of(name)))
    return mutants


def _mutant_order(item: tuple[str, Any]) -> tuple[str, int]:
    stem, _, number = item[0].rpartition("__mutmut_")
    return stem, int(number)


def function_of(mutant_name: str) -> str:
    match = _MUTANT_NAME.match(mutant_name)
    if not match:
        return mutant_name
    func = match["func"]
    return f"{match['cls']}.{func}" if match["cls"] else func


def describe(work: Path, module: str, mutant: Mutant) -> None:
    """Fill in the line and the change from `mutmut show` (a diff of the one function)."""
    mutmut = Path(sys.executable).with_name("mutmut")
    diff = subprocess.run(
        [str(mutmut), "show", mutant.name],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    mutant.original = " / ".join(line.strip() for line in removed)
    mutant.mutated = " / ".join(line.strip() for line in added)
    if removed:
        mutant.line = line_in_source(work / module, mutant.function, removed[0])


def line_in_source(source: Path, function: str, text: str) -> int | None:
    """The line of `text` inside `function` (a name or Class.method) of the original source."""
    lines = source.read_text(encoding="utf-8").splitlines()
    wanted = text.strip()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.ClassDef) and "." in function:
            if node.name != function.split(".")[0]:
                continue
            targets = [item for item in node.body if isinstance(item, ast.FunctionDef)]
        elif isinstance(node, ast.Module):
            targets = [item for item in node.body if isinstance(item, ast.FunctionDef)]
        else:
            continue
        for target in targets:
            if target.name != function.split(".")[-1] or target.end_lineno is None:
                continue
            first = min([target.lineno, *(d.lineno for d in target.decorator_list)])
            for number in range(first, target.end_lineno + 1):
                if lines[number - 1].strip() == wanted:
                    return number
    return None


def score(module: str, mutants: list[Mutant]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for mutant in mutants:
        counts[mutant.status] = counts.get(mutant.status, 0) + 1
    equivalent, survivors = [], []
    for mutant in mutants:
        if mutant.status in _DETECTED:
            continue
        entry = {
            "mutant": mutant.name,
            "status": mutant.status,
            "function": mutant.function,
            "line": mutant.line,
            "original": mutant.original,
            "mutated": mutant.mutated,
        }
        reason = EQUIVALENT.get((module, mutant.function, mutant.mutated))
        if reason:
            equivalent.append({**entry, "reason": reason})
        else:
            survivors.append(entry)
    detected = sum(1 for mutant in mutants if mutant.status in _DETECTED)
    scored = len(mutants) - len(equivalent)
    killed = detected / scored if scored else 1.0
    return {
        "mutants": len(mutants),
        "by_status": dict(sorted(counts.items())),
        "killed": detected,
        "equivalent": len(equivalent),
        "surviving": len(survivors),
        # Killed over mutants that could be killed (all but the equivalent ones).
        "score": round(killed, 4),
        "meets_target": killed >= TARGET_KILLED,
        "survivors": survivors,
        "equivalent_mutants": equivalent,
    }


def measure(module: str, tests: tuple[str, ...], scratch: Path, keep: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mutation-", dir=scratch))
    try:
        snapshot(work, module, tests)
        print(f"mutation: {module} with {' '.join(tests)} in {work}", flush=True)
        load_before = os.getloadavg()[0]
        seconds = run_mutmut(work, work / "mutmut.log")
        mutants = read_mutants(work, module)
        for mutant in mutants:
            if mutant.status not in _DETECTED:
                describe(work, module, mutant)
        result = {
            "tests": list(tests),
            # What was measured: others may be editing the module while it runs.
            "sha256": {path: _sha256(work / path) for path in (module, *tests)},
            "seconds": round(seconds, 1),
            "load_average_before": round(load_before, 2),
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **score(module, mutants),
        }
        print(
            f"  {result['killed']} of {result['mutants']} killed, {result['equivalent']} "
            f"equivalent, {result['surviving']} surviving: {result['score']:.1%} "
            f"in {seconds:.0f} s",
            flush=True,
        )
        for survivor in result["survivors"]:
            print(
                f"    {module}:{survivor['line']} {survivor['status']}: "
                f"{survivor['original']!r} -> {survivor['mutated']!r}",
                flush=True,
            )
        return result
    finally:
        if keep:
            print(f"  kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_head() -> str | None:
    completed = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() or None


def machine(scratch: Path) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "scratch_filesystem": filesystem_of(scratch),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mutation",
        description="Mutation score (mutmut) of the pure rules, each with its own fast tests.",
    )
    parser.add_argument(
        "--module",
        action="append",
        help="a module to measure, e.g. storage/merkle.py (repeatable; default: all)",
    )
    parser.add_argument("--scratch", type=Path, help="where the snapshots go (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the snapshots (mutmut show)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "mutation.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modules = pure_modules()
    chosen = args.module or list(modules)
    unknown = [module for module in chosen if module not in modules]
    if unknown:
        print(f"mutation: not a pure rule: {', '.join(unknown)}; known: {', '.join(modules)}")
        return 2
    scratch = (args.scratch or Path(tempfile.gettempdir())).resolve()
    scratch.mkdir(parents=True, exist_ok=True)

    previous: dict[str, Any] = {}
    if args.output.exists():
        previous = json.loads(args.output.read_text(encoding="utf-8")).get("modules", {})
    results = {module: previous[module] for module in modules if module in previous}
    for module in chosen:
        results[module] = measure(module, modules[module], scratch, args.keep)

    report = {
        "benchmark": "mutation",
        "tool": {"name": "mutmut", "version": version("mutmut"), "max_children": 1},
        "machine": machine(scratch),
        # The working tree may differ from it: each module's sha256 says what was measured.
        "git_head": git_head(),
        "target_score": TARGET_KILLED,
        "modules": {module: results[module] for module in modules if module in results},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"mutation: wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
