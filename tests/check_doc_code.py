#!/usr/bin/env python3
"""check_doc_code.py SOURCE_DIR [CC] - every C code block in README.md and
docs/*.md compiles against include/ with -Wall -Werror.

A block is a fenced ```c block. Each one is compiled alone (one translation
unit, -fsyntax-only, in parallel), after the usual headers: <mpipc.h> and
<errno.h> <fcntl.h> <inttypes.h> <signal.h> <stdbool.h> <stddef.h>
<stdint.h> <stdio.h> <stdlib.h> <string.h> <sys/types.h> <sys/uio.h>
<unistd.h>, in C11 with _POSIX_C_SOURCE=200809L, as the library is built.

How a block is compiled, chosen by an HTML comment on one line right before
its fence (or with one blank line between; invisible on the rendered page),
or by default:

  (default)  A block with an `int main(` line is a whole program: compiled as
             it is. Any other block is a fragment: its top-level definitions
             - a line at column 0 that starts with `static`, `struct`,
             `typedef`, `enum`, `MP_TARGET(` or `MP_TASK(`, through the line
             where its braces close or its `;` ends it, and preprocessor
             lines - stay at file scope in their order, and the rest of the
             lines become the body of a function.
  <!-- compile: given DECLARATIONS -->
             As the default, after DECLARATIONS at file scope: what the
             fragment uses but a reader has from the text around it (the
             handle made in the block before, a task function). Keep it to
             names the prose makes plain.
  <!-- compile: toplevel -->
             The block is file-scope code (declarations, definitions): compiled
             as it is.
  <!-- compile: no REASON -->
             Not compiled: the block is not C on purpose (pseudo-code, a
             sketch of a signature). REASON is required. Keep these rare.
  <!-- excerpt: examples/FILE.c -->
             The block is lines of FILE, an example the examples build
             compiles and runs whole: it is not compiled here (it is a cut-out,
             not a fragment), but FILE must exist. examples/check_cookbook.py
             checks that the lines are FILE's, verbatim and in order.

Fragments show calls whose results the prose goes on to use, so unused
variables, functions and values are not errors here (-Wno-unused-*); every
other -Wall warning is.

Exit status 0 when every block compiles, 1 with each failing block's file,
line and the compiler's messages.
"""
import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys
import tempfile

HEADERS = """#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <mpipc.h>
"""

FLAGS = ["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fsyntax-only", "-Wall", "-Werror",
         "-Wno-unused-variable", "-Wno-unused-but-set-variable", "-Wno-unused-function",
         "-Wno-unused-value", "-Wno-unused-label"]

MARKER = re.compile(r"^\s*<!--\s*compile:\s*(given|toplevel|no)\b(.*?)-->\s*$")
EXCERPT = re.compile(r"^\s*<!--\s*excerpt:\s*(\S+)\s*-->\s*$")
TOPLEVEL_START = re.compile(r"^(static\b|struct\b|typedef\b|enum\b|MP_TARGET\(|MP_TASK\()")
MAIN = re.compile(r"^\s*int\s+main\s*\(", re.M)


class Block:
    def __init__(self, path, line, code, mode, arg):
        self.path, self.line, self.code, self.mode, self.arg = path, line, code, mode, arg

    def where(self):
        return f"{self.path}:{self.line}"


def blocks(root):
    """Every ```c block of README.md and docs/*.md, with its marker."""
    files = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    for path in files:
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").split("\n")
        i = 0
        while i < len(lines):
            if re.match(r"^\s*```[cC]\s*$", lines[i]):
                start = i
                j = i + 1
                while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
                    j += 1
                mode, arg = "auto", ""
                above = lines[start - 1] if start > 0 else ""
                if not above.strip() and start > 1:
                    above = lines[start - 2]
                m = MARKER.match(above)
                if m:
                    mode, arg = m.group(1), m.group(2).strip()
                m = EXCERPT.match(above)
                if m:
                    mode, arg = "excerpt", m.group(1)
                yield Block(path.relative_to(root), start + 1, lines[start + 1:j], mode, arg)
                i = j + 1
            else:
                i += 1


def code_only(line):
    """The line without comments and string or character literals, for
    counting braces."""
    line = re.sub(r"/\*.*?\*/", "", line)
    line = re.sub(r"//.*", "", line)
    return re.sub(r"\"(\\.|[^\"\\])*\"|'(\\.|[^'\\])*'", "", line)


def split_fragment(lines):
    """(file-scope lines, body lines) of a fragment, each with the line's
    index in the block, so errors point at the right place."""
    top, body = [], []
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("#"):
            top.append((i, lines[i]))
            i += 1
        elif TOPLEVEL_START.match(lines[i]):
            depth, opened = 0, False
            while i < len(lines):
                code = code_only(lines[i])
                depth += code.count("{") - code.count("}")
                opened = opened or "{" in code
                top.append((i, lines[i]))
                i += 1
                stripped = code.strip()
                if depth <= 0 and (opened or stripped.endswith(";")):
                    break
        else:
            body.append((i, lines[i]))
            i += 1
    return top, body


def source(block):
    """The translation unit for a block, with #line directives so the
    compiler's messages name the Markdown file and line."""
    first = block.line + 1  # the block's first line in the Markdown file

    def at(idx):
        return f'#line {first + idx} "{block.path}"\n'

    out = [HEADERS]
    if block.mode == "given":
        out.append(f'#line {block.line - 1} "{block.path}"\n{block.arg}\n')
    if block.mode == "toplevel" or MAIN.search("\n".join(block.code)):
        out.append(at(0) + "\n".join(block.code) + "\n")
        return "".join(out)
    top, body = split_fragment(block.code)
    for idx, line in top:
        out.append(at(idx) + line + "\n")
    out.append("void doc_fragment(void);\nvoid doc_fragment(void)\n{\n")
    for idx, line in body:
        out.append(at(idx) + line + "\n")
    out.append("}\n")
    return "".join(out)


def compile_block(cc, include, block, tmpdir, n):
    src = pathlib.Path(tmpdir) / f"block{n}.c"
    src.write_text(source(block))
    run = subprocess.run([cc, *FLAGS, "-I", str(include), str(src)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return run.returncode, run.stdout


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    root = pathlib.Path(argv[1]).resolve()
    cc = argv[2] if len(argv) > 2 else os.environ.get("CC", "cc")
    failures, skipped, todo, excerpts = [], [], [], []
    for b in blocks(root):
        if b.mode == "excerpt":
            if not (root / b.arg).is_file():
                failures.append((b, f"<!-- excerpt: {b.arg} -->: no such file"))
            excerpts.append(b)
        elif b.mode == "no":
            if not b.arg:
                failures.append((b, "<!-- compile: no --> needs a reason after 'no'"))
            skipped.append(b)
        elif b.mode == "given" and not b.arg:
            failures.append((b, "<!-- compile: given --> needs the declarations it gives"))
        else:
            todo.append(b)
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        jobs = [(b, pool.submit(compile_block, cc, root / "include", b, tmp, n))
                for n, b in enumerate(todo)]
        for b, job in jobs:
            rc, text = job.result()
            if rc != 0:
                failures.append((b, text.rstrip()))
    for b, text in failures:
        print(f"{b.where()}: this C block does not compile:\n{text}\n")
    if failures:
        print(f"check_doc_code.py: {len(failures)} of {len(todo) + len(skipped) + len(excerpts)} C blocks "
              "fail (see the rules at the top of tests/check_doc_code.py)")
        return 1
    print(f"check_doc_code.py: {len(todo)} C blocks compile"
          + (f", {len(skipped)} marked 'compile: no'" if skipped else "")
          + (f", {len(excerpts)} excerpts of examples/ (compiled there)" if excerpts else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
