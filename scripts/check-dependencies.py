#!/usr/bin/env python3
"""Check the package's dependency rules against what its sources import.

SwiftPM lets a target import any module that happens to be built before it, so a
target can compile only because an unrelated dependency drags another target in
(`--explicit-target-dependency-import-check` does not catch this on Linux with
Swift 6.3). This script reads the manifest (`swift package dump-package`) and
every Swift file, and fails when:

1. a target imports one of this package's targets without declaring it, or
2. a pure core (docs/ARCHITECTURE.md, rule 1) imports anything outside the
   standard library, swift-collections and the other pure cores.

Usage: scripts/check-dependencies.py [PACKAGE_DIR]
"""

import json
import os
import re
import subprocess
import sys

# docs/ARCHITECTURE.md, rule 1.
PURE_CORES = {"XenABI", "XenMemory", "XenRing", "XenstoreWire", "XenstoreCore", "ConsoleCore", "Toolstack"}
# What a pure core may import besides the other pure cores.
PURE_ALLOWED = {"Swift", "Synchronization", "_Concurrency", "Collections", "DequeModule", "OrderedCollections"}

IMPORT = re.compile(
    r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:public\s+|package\s+|internal\s+|private\s+|fileprivate\s+)?"
    r"import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias|actor)\s+)?([A-Za-z_][A-Za-z0-9_]*)"
)


def module_name(target_name):
    return re.sub(r"[^A-Za-z0-9_]", "_", target_name)


def swift_files(directory):
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith(".swift"):
                yield os.path.join(root, name)


def imports_of(path):
    """(line number, module) for every import outside a comment or string literal."""
    found = []
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            match = IMPORT.match(line)
            if match:
                found.append((number, match.group(1)))
    return found


def main():
    package = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    manifest = json.loads(
        subprocess.run(
            ["swift", "package", "--package-path", package, "dump-package"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    targets = manifest["targets"]
    local = {module_name(t["name"]): t for t in targets}
    problems = []
    for target in targets:
        if target["type"] in ("system", "binary", "plugin"):
            continue
        name = module_name(target["name"])
        default = "Tests" if target["type"] == "test" else "Sources"
        directory = os.path.join(package, target.get("path") or os.path.join(default, target["name"]))
        declared = set()
        for dependency in target["dependencies"]:
            kind, value = next(iter(dependency.items()))
            declared.add(module_name(value[0]))
        for path in swift_files(directory):
            relative = os.path.relpath(path, package)
            for number, module in imports_of(path):
                if module == name:
                    continue
                if module in local and module not in declared:
                    problems.append(
                        f"{relative}:{number}: {target['name']} imports {module} but does not declare it; "
                        f'add "{module}" to its dependencies in Package.swift'
                    )
                if name in PURE_CORES and module not in PURE_CORES and module not in PURE_ALLOWED:
                    problems.append(
                        f"{relative}:{number}: {target['name']} is a pure core and may not import {module} "
                        "(docs/ARCHITECTURE.md, rule 1)"
                    )
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} dependency rule violation(s)", file=sys.stderr)
        return 1
    print(f"dependency rules hold for {len(targets)} targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
