#!/usr/bin/env python3
"""check_cookbook.py SOURCE_DIR - docs/cookbook.md shows only code that runs.

Every fenced code block of docs/cookbook.md that is C must follow a marker
line `<!-- excerpt: examples/FILE -->` (or `<!-- excerpt of ...: examples/FILE -->`,
also allowed before a Python block), and its lines must be FILE's lines,
verbatim and consecutive, in order; a line `/* ... */` (C) or `# ...` (Python)
in the block marks lines left out. The examples are built and run by ctest, so an excerpt that
matches compiles and runs. Every examples/ link must name a file that exists.

Exit status 0 when all hold, 1 with a list of what does not.
"""
import pathlib
import re
import sys

MARKER = re.compile(r"<!-- excerpt(?: of [^:]*)?: (examples/[A-Za-z0-9_./-]+) -->")
LINK = re.compile(r"\]\(\.\./(examples/[A-Za-z0-9_./-]*)\)")
ELISIONS = ("/* ... */", "# ...")


def find_run(lines, run, start):
    """The index just past the first occurrence of run in lines at or after
    start, or -1."""
    for i in range(start, len(lines) - len(run) + 1):
        if lines[i:i + len(run)] == run:
            return i + len(run)
    return -1


def check(root):
    doc = root / "docs" / "cookbook.md"
    text = doc.read_text(encoding="utf-8").splitlines()
    errors = []
    for n, line in enumerate(text, 1):
        for target in LINK.findall(line):
            if not (root / target).exists():
                errors.append(f"{doc}:{n}: link to missing {target}")
    i, pending = 0, None
    while i < len(text):
        line = text[i]
        m = MARKER.search(line)
        if m:
            pending = (m.group(1), i + 1)
        elif line.startswith("```") and len(line) > 3:
            lang, start = line[3:].strip(), i + 1
            i += 1
            block = []
            while i < len(text) and not text[i].startswith("```"):
                block.append(text[i].rstrip())
                i += 1
            if pending is None:
                if lang == "c":
                    errors.append(f"{doc}:{start}: C block without an excerpt marker")
            else:
                target, at = pending
                path = root / target
                if not path.exists():
                    errors.append(f"{doc}:{at}: excerpt of missing {target}")
                else:
                    src = [s.rstrip() for s in path.read_text(encoding="utf-8").splitlines()]
                    runs, run = [], []
                    for b in block:
                        if b.strip() in ELISIONS:
                            runs.append(run)
                            run = []
                        else:
                            run.append(b)
                    runs.append(run)
                    pos = 0
                    for r in runs:
                        if not r:
                            continue
                        pos = find_run(src, r, pos)
                        if pos < 0:
                            errors.append(f"{doc}:{start}: not verbatim in {target}: "
                                          f"{r[0].strip()!r} ...")
                            break
            pending = None
        i += 1
    return errors


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    errors = check(root)
    for e in errors:
        print(e)
    if errors:
        return 1
    print("docs/cookbook.md: every excerpt is verbatim from its example")
    return 0


if __name__ == "__main__":
    sys.exit(main())
