#!/usr/bin/env python3
"""check_parity.py [--python] SOURCE_DIR - docs/python-to-c.md, the Python-to-C guide,
is also the parity table: every public name of the headers must appear on it.

Checked, in the code of each include/**/*.h (comments and strings taken out):
  - every function declared with MP_API;
  - every public macro (#define MP_...), except include guards and MP__*;
  - every constant of enum mp_status (error.h), each the twin of a Python
    exception in the page's "Exceptions" table.

A name counts as mentioned when it appears on the page as a whole word
(`mp_conn_send` in a table cell or a code block). A header that gains a call
without a row here leaves a Python reader unable to find it; the failure
lists each missing name, its header and line, and the section of the page
where its row belongs.

With --python, the other direction: every public name of the python3 that
runs the script - each module's __all__, the public classes it defines and
their public methods and attributes, for multiprocessing and the submodules
in PY_MODULES - must appear on the page as a word, beside its C twin or
marked "not provided" with the reason.

Exit status 0 when every name is on the page, 1 with the list otherwise.
"""
import importlib
import inspect
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_names import strip_c_comments  # noqa: E402

PAGE = pathlib.Path("docs/python-to-c.md")

# The page's section that holds each header's rows (a new header goes in a
# section of its own, named after its Python module).
SECTION = {
    "common.h": "Library-only calls",
    "conn.h": "Pipe and Connection (multiprocessing.connection)",
    "context.h": "Start methods (multiprocessing.context, spawn, forkserver)",
    "error.h": "Exceptions",
    "listener.h": "Listener and Client",
    "manager.h": "Managers (multiprocessing.managers)",
    "manager_data.h": "Managers (multiprocessing.managers)",
    "obj.h": "Values: pickle and Python's builtin types",
    "pool.h": "Pool (multiprocessing.pool)",
    "process.h": "Process (multiprocessing.process)",
    "queue.h": "Queues (multiprocessing.queues)",
    "reduction.h": "Reduction (multiprocessing.reduction)",
    "shared_memory.h": "Shared memory (multiprocessing.shared_memory)",
    "sync.h": "Locks and friends (multiprocessing.synchronize)",
    "version.h": "Library-only calls",
}

FUNC = re.compile(r"\bMP_API\b[^;{}]*?\b(mp_[A-Za-z0-9_]+)\s*\(")
MACRO = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(MP_[A-Za-z0-9_]+)", re.M)
GUARD = re.compile(r"^[ \t]*#[ \t]*ifndef[ \t]+([A-Za-z0-9_]+)", re.M)
STATUS_ENUM = re.compile(r"\benum\s+mp_status\s*\{([^}]*)\}", re.S)
ENUM_CONST = re.compile(r"\b(MP_[A-Z0-9_]+)\s*(?:=|,|$)")


PY_MODULES = [
    "multiprocessing", "multiprocessing.connection", "multiprocessing.managers",
    "multiprocessing.pool", "multiprocessing.shared_memory", "multiprocessing.sharedctypes",
    "multiprocessing.synchronize", "multiprocessing.reduction", "multiprocessing.context",
    "multiprocessing.process", "multiprocessing.queues", "multiprocessing.util",
    "multiprocessing.heap", "multiprocessing.spawn", "multiprocessing.forkserver",
    "multiprocessing.resource_tracker", "multiprocessing.popen_fork",
    "multiprocessing.popen_spawn_posix", "multiprocessing.popen_forkserver",
    "multiprocessing.resource_sharer",
]


def python_names():
    """(module, dotted name) for each public name of PY_MODULES in this python3."""
    out = []
    for modname in PY_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue  # a module this platform lacks (popen_* on Windows)
        names = list(getattr(mod, "__all__", []))
        names += [n for n in dir(mod) if not n.startswith("_") and n not in names
                  and getattr(getattr(mod, n), "__module__", None) == modname]
        for n in names:
            obj = getattr(mod, n, None)
            out.append((modname, n, n))
            if not inspect.isclass(obj):
                continue
            for klass in obj.__mro__:
                if not klass.__module__.startswith("multiprocessing"):
                    continue
                out += [(modname, f"{n}.{a}", a) for a in klass.__dict__ if not a.startswith("_")]
    return out


def check_python(page_text):
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", page_text))
    missing = sorted({f"{m}.{dotted}" for m, dotted, word in python_names() if word not in words})
    version = ".".join(map(str, sys.version_info[:2]))
    if missing:
        print(f"check_parity.py: {len(missing)} public name(s) of Python {version}'s "
              f"multiprocessing not on {PAGE}; add each to its module's section, beside its "
              "C twin or as \"not provided\" with the reason:")
        for name in missing:
            print(f"  {name}")
        return 1
    print(f"check_parity.py: every public name of Python {version}'s multiprocessing is on {PAGE}")
    return 0


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def public_names(header):
    """(name, kind, line) for each public name the header's code declares."""
    code, _ = strip_c_comments(header.read_text())
    guards = set(GUARD.findall(code))
    out = []
    for m in FUNC.finditer(code):
        out.append((m.group(1), "function", line_of(code, m.start(1))))
    for m in MACRO.finditer(code):
        name = m.group(1)
        if name in guards or name.startswith("MP__"):
            continue
        out.append((name, "macro", line_of(code, m.start(1))))
    for m in STATUS_ENUM.finditer(code):
        body_start = m.start(1)
        for c in ENUM_CONST.finditer(m.group(1)):
            out.append((c.group(1), "status code", line_of(code, body_start + c.start(1))))
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--python"]
    root = pathlib.Path(args[0] if args else ".")
    page = root / PAGE
    if not page.exists():
        print(f"check_parity.py: {PAGE} is missing")
        return 1
    if "--python" in sys.argv[1:]:
        return check_python(page.read_text())
    mentioned = set(re.findall(r"(?<![A-Za-z0-9_])((?:mp|MP)_[A-Za-z0-9_]+)", page.read_text()))

    headers = sorted((root / "include").rglob("*.h"))
    if not headers:
        print(f"check_parity.py: no headers under {root / 'include'}")
        return 1

    seen = set()
    missing = []  # (header, line, name, kind)
    for h in headers:
        for name, kind, line in public_names(h):
            if name in seen:
                continue  # MP_API is defined twice (#if/#else)
            seen.add(name)
            if name not in mentioned:
                missing.append((h, line, name, kind))

    if missing:
        print(f"check_parity.py: {len(missing)} public name(s) not on {PAGE} "
              "(the Python-to-C guide is the parity table: give each a row beside its "
              "Python twin, or in \"Library-only calls\" if it has none):")
        for h, line, name, kind in missing:
            rel = h.relative_to(root)
            section = SECTION.get(h.name, f"a new section for {h.name}")
            print(f"  {name} ({kind}, {rel}:{line}) -> add to {PAGE}, section \"{section}\"")
        return 1
    print(f"check_parity.py: {len(seen)} public names, every one on {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
