#!/usr/bin/env python3
"""doxygen_filter.py FILE - print a public header as Doxygen should read it.

The headers document every declaration in a plain block comment above it
(docs/conventions.md), which Doxygen ignores: it reads only /** and ///.
Doxygen runs this filter on each header (Doxyfile.in, FILTER_PATTERNS), so the
headers stay as they are and a comment added later in the same style counts:
  - the file's opening comment becomes its page (\\file);
  - a section comment, /* ---- Title ---- ... */, becomes a titled group of
    the declarations up to the next one (\\name), its text the group's;
  - a comment that starts a line becomes the documentation (/**) of the
    declaration after it, unless a preprocessor line other than #define or
    #if comes first (#include, #ifdef __cplusplus): that one stays plain;
  - a comment above a run of declarations with no blank line between them
    documents each of them (conn.h: readable / writable / closed), as the
    headers mean it: the others get a copy of the first's (\\copydoc), unless
    they have a comment of their own on their line;
  - a comment after a member or a #define on the same line documents that
    member or macro (/**<); one after #endif or #include stays plain;
  - in comments, backslashes, # and < are literal text, as the headers' prose
    means them.
Line numbers are kept, so Doxygen's warnings point at the real lines.
"""
import re
import sys

LEADING = re.compile(r"^(\s*)/\*(?![*!])")
TRAILING = re.compile(r"^(\s*(?:#\s*define\s)?[^#/]*?)/\*(?![*!<])")
SECTION = re.compile(r"^/\*\s*-{3,}\s*(.*?)\s*-*\s*(\*/)?\s*$")
DEFINE = re.compile(r"^\s*#\s*define\s")
DIRECTIVE = re.compile(r"^\s*#\s*(?!define)\w")


def escape(text):
    """Comment text with Doxygen's command characters made literal."""
    text = text.replace("\\", "\\\\")
    text = re.sub(r"#(?=\w)", r"\\#", text)
    return re.sub(r"<(?=[A-Za-z/])", r"\\<", text)


def decl_name(line):
    """The name a declaration starting on this line declares, or None."""
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", line)  # a function pointer type
    if m:
        return m.group(1)
    m = re.match(r"^\s*#\s*define\s+(\w+)", line)
    if m:
        return m.group(1)
    if re.match(r"^\s*typedef\b", line):
        m = re.search(r"(\w+)\s*;\s*$", line)
        return m.group(1) if m else None
    m = re.search(r"(\w+)\s*\(", line)
    return m.group(1) if m else None


def comments(lines):
    """(first, last) line indexes of each comment that starts a line."""
    out = []
    i = 0
    while i < len(lines):
        m = LEADING.match(lines[i])
        if m:
            end = i
            while "*/" not in lines[end][m.end() if end == i else 0:] and end + 1 < len(lines):
                end += 1
            out.append((i, end))
            i = end + 1
            continue
        # A comment opened after code runs to its */ too.
        if "/*" in lines[i] and "*/" not in lines[i][lines[i].index("/*"):]:
            while i + 1 < len(lines) and "*/" not in lines[i + 1]:
                i += 1
            i += 1
        i += 1
    return out


def convert_trailing(lines, spans):
    inside = set()
    for first, last in spans:
        inside.update(range(first, last + 1))
    for i, line in enumerate(lines):
        if i in inside:
            continue
        t = TRAILING.match(line)
        if t and (not line.lstrip().startswith("#") or DEFINE.match(line)):
            lines[i] = t.group(1) + "/**<" + line[t.end():]


def distribute(lines, start):
    """Give each declaration after the first in the run starting at index
    start (up to a blank line or a comment) a copy of the first's comment."""
    first = None
    fresh = True  # the line starts a declaration
    i = start
    while i < len(lines) and lines[i].strip() and not LEADING.match(lines[i]):
        line = lines[i]
        if fresh and not DIRECTIVE.match(line):
            name = decl_name(line)
            if first is None:
                first = name
            elif name and first and name != first and "/**<" not in line:
                lines[i] = "/** \\copydoc " + first + " */ " + line
        code = re.sub(r"/\*.*?\*/", "", line).rstrip()
        fresh = code.endswith(";") or (code.lstrip().startswith("#") and not code.endswith("\\"))
        i += 1


def next_code_line(lines, i):
    while i < len(lines):
        if lines[i].strip():
            return lines[i]
        i += 1
    return ""


def main(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    spans = comments(lines)
    convert_trailing(lines, spans)
    group_open = False
    for n, (i, end) in enumerate(spans):
        m = LEADING.match(lines[i])
        indent = m.group(1)
        after = next_code_line(lines, end + 1)
        section = SECTION.match(lines[i]) if not indent else None
        if n == 0:
            # The file's opening comment: its page.
            lines[i] = indent + "/** \\file " + escape(lines[i][m.end():].lstrip())
        elif section:
            title = escape(section.group(1))
            close = "/** @} */ " if group_open else ""
            lines[i] = close + "/** \\name " + title + ("\n */" if section.group(2) else "")
            lines[i] = lines[i].replace("\n", " ")
            for k in range(i + 1, end + 1):
                lines[k] = escape(lines[k])
            lines[end] += " /** @{ */"
            group_open = True
            continue
        elif (not after.lstrip().startswith("#") or DEFINE.match(after)
              or (re.match(r"^\s*#\s*if", after) and "__cplusplus" not in after)):
            lines[i] = indent + "/**" + escape(lines[i][m.end():])
        else:
            continue
        for k in range(i + 1, end + 1):
            lines[k] = escape(lines[k])
        distribute(lines, end + 1)
    if group_open:
        # Close the last group before the C++ guard and the include guard end.
        for k in range(len(lines) - 1, -1, -1):
            if re.match(r"^\s*#\s*ifdef\s+__cplusplus", lines[k]):
                lines[k - 1] += " /** @} */"
                break
        else:
            lines.append("/** @} */")
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
