#!/usr/bin/env python3
"""check_names.py SOURCE_DIR - every mp_* / MP_* name the documentation
mentions must exist in the public headers.

Read: README.md, docs/*.md, and the comments of include/**/*.h. Every name
that starts with mp_ or MP_ there must be declared by the code of a public
header (with the comments taken out): a function, a type or struct tag, a
macro or an enum constant. A doc that names a function that was renamed or
never written sends a reader to nothing; this test says where.

Not checked, because they are not names of this API:
  - private names, mp__* and MP__* (they live in src/ and may change);
  - placeholders: a one-letter capital part such as mp_X_free() or
    MP_E<code> / MP_E* (a wildcard that names a family: at least one
    declared name must start with it), and mp_<type>_<verb>, which the
    pattern never matches;
  - names of other projects, listed in FOREIGN below with the reason.

Exit status 0 when every name exists, 1 with a list of file:line: name.
"""
import pathlib
import re
import sys

# Names that look like ours but belong to someone else, with where they come
# from. Keep this short: a name of ours that is missing is what the test is
# for.
FOREIGN = {
}

NAME = re.compile(r"(?<![A-Za-z0-9_])(\"?)((?:mp|MP)_[A-Za-z0-9_]+)(\*|<|\")?")
PLACEHOLDER_PART = re.compile(r"^[A-Z]$")


def strip_c_comments(text):
    """The code of a C file with comments and string literals blanked out,
    and the comments themselves with their line numbers."""
    code = []
    comments = []  # (line, text)
    i, n, line = 0, len(text), 1
    while i < n:
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            chunk = text[i:end]
            comments.append((line, chunk))
            line += chunk.count("\n")
            code.append("\n" * chunk.count("\n"))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            comments.append((line, text[i:end]))
            i = end
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            code.append(" ")
            i = j + 1
        else:
            if text[i] == "\n":
                line += 1
            code.append(text[i])
            i += 1
    return "".join(code), comments


def mentions(text, first_line=1):
    """(line, name, suffix) for every mp_/MP_ name in text. suffix is "*" or
    "<" for a prefix (MP_E*, MP_TYPE_*, MP_E<code>). A name in double quotes
    is a string a function returns ("MP_UNKNOWN"), not a name of the API."""
    for m in NAME.finditer(text):
        quote, name, suffix = m.group(1), m.group(2), m.group(3)
        if quote and suffix == '"':
            continue
        if suffix == '"':
            suffix = None
        if suffix is None:
            name = name.rstrip("_")
        line = first_line + text.count("\n", 0, m.start())
        yield line, name, suffix


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    headers = sorted((root / "include").rglob("*.h"))
    if not headers:
        print(f"check_names.py: no headers under {root / 'include'}")
        return 1

    declared = set()
    header_mentions = []  # (path, line, name, suffix)
    for h in headers:
        code, comments = strip_c_comments(h.read_text())
        declared.update(re.findall(r"(?<![A-Za-z0-9_])((?:mp|MP)_[A-Za-z0-9_]+)", code))
        for line, chunk in comments:
            for ln, name, suffix in mentions(chunk, line):
                header_mentions.append((h, ln, name, suffix))

    doc_mentions = []
    docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    for d in docs:
        if not d.exists():
            continue
        for ln, name, suffix in mentions(d.read_text()):
            doc_mentions.append((d, ln, name, suffix))

    missing = []
    checked = set()
    for path, line, name, suffix in doc_mentions + header_mentions:
        if name.startswith(("mp__", "MP__")) or name in FOREIGN:
            continue
        parts = name.split("_")[1:]
        if any(PLACEHOLDER_PART.match(p) for p in parts if p) and suffix != "*":
            # mp_X_free: a family, not a name. MP_E alone is checked below.
            if not (len(parts) == 1 and suffix in ("*", "<")):
                continue
        if suffix in ("*", "<"):
            ok = any(d.startswith(name) for d in declared)
        else:
            ok = name in declared
        checked.add(name)
        if not ok:
            missing.append((path.relative_to(root), line, name))

    if missing:
        print("check_names.py: names the documentation mentions that no public header declares:")
        for path, line, name in missing:
            print(f"  {path}:{line}: {name}")
        return 1
    print(f"check_names.py: {len(checked)} names mentioned, every one declared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
