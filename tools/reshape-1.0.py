#!/usr/bin/env python3
"""reshape-1.0.py DIR - move the arguments of the 0.x calls whose signature
API 1.0 changed (issue 13), in C code and Markdown code under DIR.

Not idempotent: run it ONCE on a tree written against 0.x, after
tools/rename-1.0.sh. It rewrites calls, prototypes and definitions alike (a
parameter list is a comma list too), and prints every use whose arity does
not match (a comment that abbreviates a call, a function pointer), to be
fixed by hand. CHANGES.md lists each change as old -> new.

reshape-1.0.py DIR --only NAME... applies only the rules of those names.
"""
import pathlib
import re
import sys

# name -> (arity, new order as indexes into the old argument list, new name)
# An index that is a string is a new argument inserted there.
RULES = {
    # timeout last, after the outputs and err
    "mp_result_get": (4, [0, 2, 3, 1], None),
    "mp_result_get_bytes": (5, [0, 2, 3, 4, 1], None),
    "mp_imap_next": (5, [0, 2, 3, 4, 1], None),
    "mp_pool_apply": (6, [0, 1, 2, 3, 5, 4], None),
    "mp_pool_apply_bytes": (8, [0, 1, 2, 3, 4, 5, 7, 6], None),
    "mp_pool_map": (7, [0, 1, 2, 3, 4, 6, 5], None),
    "mp_pool_starmap": (7, [0, 1, 2, 3, 4, 6, 5], None),
    "mp_pool_map_array": (10, [0, 1, 2, 3, 4, 5, 6, 7, 9, 8], None),
    # one barrier wait, timeout last (MP_FOREVER: the barrier's default)
    "mp_barrier_wait": (1, [0, "MP_FOREVER"], None),
    "mp_barrier_wait_timeout": (2, [0, 1], "mp_barrier_wait"),
    # inputs before outputs
    "mp_conn_recv_bytes": (5, [0, 3, 1, 2, 4], None),
}

CHAR_LIT = re.compile(r"'(\\.|[^\\'\n])'")
SKIP = ("CHANGES.md", "tools/", "test_api_conventions")


def split_args(text, start):
    """Arguments of the call whose '(' is at text[start]; returns (args, end)
    with end the index after ')', or None when unbalanced."""
    depth, i, args, cur = 0, start, [], start + 1
    in_str = None
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 2
                continue
            if ch == in_str:
                in_str = None
        elif ch == '"':
            in_str = ch
        elif ch == "'" and CHAR_LIT.match(text, i):
            i = CHAR_LIT.match(text, i).end()
            continue
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                args.append(text[cur:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(text[cur:i])
            cur = i + 1
        i += 1
    return None


def reshape(text, path, report, rules):
    names = "|".join(sorted(rules, key=len, reverse=True))
    pat = re.compile(r"(?<![A-Za-z0-9_])(" + names + r")()\(")
    out, pos = [], 0
    for m in pat.finditer(text):
        if m.start() < pos:
            continue
        name = m.group(1)
        arity, order, new_name = RULES[name]
        res = split_args(text, m.end() - 1)
        if res is None:
            continue
        args, end = res
        if len(args) == 1 and not args[0].strip():
            args = []
        if not args:
            continue  # a name in prose: mp_result_get()
        if len(args) != arity:
            line = text.count("\n", 0, m.start()) + 1
            report.append(f"{path}:{line}: {name} with {len(args)} arguments, left as is")
            continue
        stripped = [a.strip() for a in args]
        lead = [a[: len(a) - len(a.lstrip())] for a in args]
        new = []
        for k, o in enumerate(order):
            arg = o if isinstance(o, str) else stripped[o]
            new.append(("" if k == 0 else (lead[k] if k < len(lead) and lead[k] else " ")) + arg)
        out.append(text[pos : m.start()])
        out.append((new_name or name) + m.group(2) + "(" + ",".join(new) + ")")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def main():
    argv = sys.argv[1:]
    root = pathlib.Path(argv[0] if argv else ".")
    rules = RULES
    if "--only" in argv:
        rules = {n: RULES[n] for n in argv[argv.index("--only") + 1 :]}
    report = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or p.suffix not in (".c", ".h", ".md"):
            continue
        if rel.startswith((".git/", "build/")) or any(s in rel for s in SKIP):
            continue
        text = p.read_text()
        new = reshape(text, rel, report, rules)
        if new != text:
            p.write_text(new)
    for r in report:
        print(r)


if __name__ == "__main__":
    main()
