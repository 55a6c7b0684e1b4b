#!/usr/bin/env python3
"""test_api_conventions.py DIR - the rules of docs/conventions.md that a
program can check, read from the public headers.

DIR is the source tree (headers in DIR/include/mpipc) or an install prefix's
include directory (headers in DIR/mpipc). Every MP_API prototype is checked:

  - a *_free function returns void;
  - a `double timeout` parameter is the last one;
  - a parameter named i, index, start or stop (a Python index) is ssize_t;
  - a parameter named maxsize, len, size, n or cap (a length) is size_t;
  - an options struct's length field (maxsize, len, size, n, cap) is size_t;
  - a function that returns a count (named *_len, *_qsize, *_count, *_pids,
    or mp_wait) returns ssize_t;
  - no declaration uses a 0.x manager-proxy name (mp_dict, mp_list,
    mp_mlock, mp_mqueue and their functions): proxies are mp_dictproxy,
    mp_listproxy, mp_lockproxy, mp_queueproxy.

Exit status 0 when every prototype follows them, 1 with one line per
breach, naming the function.
"""
import pathlib
import re
import sys

INDEX_NAMES = {"i", "index", "start", "stop"}
LENGTH_NAMES = {"maxsize", "len", "size", "n", "cap"}
COUNT_SUFFIXES = ("_len", "_qsize", "_count", "_pids")
COUNT_NAMES = {"mp_wait"}
OLD_PROXY = re.compile(
    r"(?<![A-Za-z0-9_])(mp_dict|mp_list(?!_node)|mp_mlock|mp_mqueue)(?![A-Za-z0-9])")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def split_params(plist):
    """Split a parameter list at the commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in plist:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return [] if out == ["void"] else out


def parse_param(p):
    """(type, name, is_pointer) of one parameter; name None when absent."""
    if p == "...":
        return "...", None, False
    m = re.match(r"^(.*?)\(\s*\*\s*(\w+)\s*\)\s*\(.*\)$", p)  # function pointer
    if m:
        return m.group(1).strip() + " (*)(...)", m.group(2), True
    m = re.match(r"^(.*?)(\w+)$", p)
    if not m or not m.group(1).strip():
        return p, None, "*" in p
    typ = m.group(1).strip()
    return typ, m.group(2), "*" in typ


def prototypes(path):
    """(name, return type, [params], line) for each MP_API prototype."""
    text = strip_comments(path.read_text())
    for m in re.finditer(r"\bMP_API\s+([^;{]*?\))\s*(?:__attribute__\s*\(\(.*?\)\)\s*)?;",
                         text, re.S):
        decl = " ".join(m.group(1).split())
        head = re.match(r"^(.*?)(\w+)\s*\((.*)\)$", decl)
        if not head:
            continue
        ret, name, plist = head.group(1).strip(), head.group(2), head.group(3)
        line = text.count("\n", 0, m.start()) + 1
        yield name, ret, split_params(plist), line


def check(path):
    errors = []
    rel = path.name
    for name, ret, params, line in prototypes(path):
        where = f"{rel}:{line}: {name}"
        if name.endswith("_free") and ret != "void":
            errors.append(f"{where}: a _free returns {ret}, not void")
        parsed = [parse_param(p) for p in params]
        for k, (typ, pname, ptr) in enumerate(parsed):
            if pname == "timeout" and typ == "double" and k != len(parsed) - 1:
                errors.append(f"{where}: double timeout is parameter {k + 1} of "
                              f"{len(parsed)}, not the last")
            if pname in INDEX_NAMES and not ptr and typ != "ssize_t":
                errors.append(f"{where}: index parameter {pname} is {typ}, not ssize_t")
            if pname in LENGTH_NAMES and not ptr and typ != "size_t":
                errors.append(f"{where}: length parameter {pname} is {typ}, not size_t")
        if (name.endswith(COUNT_SUFFIXES) or name in COUNT_NAMES) and ret != "ssize_t":
            errors.append(f"{where}: returns a count as {ret}, not ssize_t")
        decl = f"{ret} {name}({', '.join(params)})"
        old = OLD_PROXY.search(decl)
        if old:
            errors.append(f"{where}: uses the 0.x proxy name {old.group(1)} "
                          "(now mp_dictproxy, mp_listproxy, mp_lockproxy, mp_queueproxy)")
    # Proxy types declared under their old names; option fields that are
    # lengths (mp_queue_opts.maxsize).
    text = strip_comments(path.read_text())
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\w+\s*;", text, re.S):
        for field in m.group(2).split(";"):
            typ, fname, ptr = parse_param(" ".join(field.split()))
            if fname in LENGTH_NAMES and not ptr and typ != "size_t":
                line = text.count("\n", 0, m.start()) + 1
                errors.append(f"{rel}:{line}: {m.group(1)}.{fname} is {typ}, not size_t")
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s+(\w+)\s*;", text):
        if OLD_PROXY.fullmatch(m.group(2)) or OLD_PROXY.match(m.group(2) + " "):
            line = text.count("\n", 0, m.start()) + 1
            errors.append(f"{rel}:{line}: type {m.group(2)}: a 0.x proxy name")
    return errors


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    inc = root / "include" / "mpipc"
    if not inc.is_dir():
        inc = root / "mpipc"
    headers = sorted(inc.glob("*.h"))
    if not headers:
        print(f"test_api_conventions.py: no headers under {root}", file=sys.stderr)
        return 2
    errors, count = [], 0
    for h in headers:
        count += sum(1 for _ in prototypes(h))
        errors += check(h)
    if count < 100:
        # A parser that finds nothing would pass everything.
        errors.append(f"only {count} prototypes found: the parser lost track")
    if errors:
        print("test_api_conventions.py: prototypes that break docs/conventions.md:")
        for e in errors:
            print("  " + e)
        return 1
    print(f"test_api_conventions.py: {count} prototypes in {len(headers)} headers follow "
          "docs/conventions.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
