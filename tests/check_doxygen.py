#!/usr/bin/env python3
"""check_doxygen.py DOXYGEN DOXYFILE WARNINGS_LOG - the API reference has no
undocumented public symbol.

Runs Doxygen on the public headers with the configuration the `docs` target
uses (Doxyfile.in; this one writes no HTML) and fails on any warning in its
log: a function, type, macro or member with no comment ("is not
documented"), or a comment Doxygen cannot read. Each line of the log names
the header and line.

Exit status 0 when the log is empty, 1 with the warnings otherwise.
"""
import os
import pathlib
import subprocess
import sys


def main(doxygen, doxyfile, log):
    log = pathlib.Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        log.unlink()
    run = subprocess.run([doxygen, doxyfile], cwd=os.path.dirname(doxyfile),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if run.returncode != 0:
        sys.stdout.write(run.stdout)
        print(f"check_doxygen.py: doxygen failed with status {run.returncode}")
        return 1
    warnings = [l for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
    if warnings:
        print("\n".join(warnings))
        undocumented = sum("is not documented" in w for w in warnings)
        print(f"check_doxygen.py: {len(warnings)} warnings, {undocumented} undocumented "
              "public symbols: give each a comment above it (see docs/conventions.md)")
        return 1
    print("check_doxygen.py: every public symbol in include/mpipc is documented")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
