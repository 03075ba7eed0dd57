#!/usr/bin/env python3
"""Checks the import rules of runtime/src that ARCHITECTURE.md's code map states.

Reads every `crate::`, `super::` and `self::` path of the crate's files (test modules left
out: `#[cfg(test)]` items and files named tests.rs), resolves each to the module file that
defines it, and fails when
  - two or more files import each other in a loop (an import cycle), or
  - a file imports a module that the code map's "never imports" column forbids for it.

The code map is the table under "## Code map" in ARCHITECTURE.md: its first column names a
folder or file (`storage/`, `clock.rs`), its "never imports" column lists module paths in
backticks (`api`, `executor::wasm`) or `*` (nothing of the crate), and its "except" column
the paths allowed despite that (`executor::invocation`). A rule holds for every file under
its folder; a file's most specific row wins.

Usage: scripts/check-imports.py [CRATE_SRC] [ARCHITECTURE_MD]; prints what it finds and exits
1 when a rule is broken. Run by scripts/test.sh before the Rust tests.
"""
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "runtime", "src")
doc = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "ARCHITECTURE.md")


def module_files():
    """Module path (tuple) -> file path relative to src."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            # The crate roots only declare modules (main.rs is the binary's, through the
            # library's public paths).
            if f.endswith(".rs") and not (dirpath == src and f in ("lib.rs", "main.rs")):
                rel = os.path.relpath(os.path.join(dirpath, f), src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                mods[tuple(parts)] = rel.replace(os.sep, "/")
    return mods


def matching_brace(text, open_at):
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def code_only(text):
    """The file without comments, string literals and `#[cfg(test)]` modules."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', '""', text)
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
        if not m:
            return text
        end = matching_brace(text, m.end() - 1)
        text = text[: m.start()] + text[end + 1:]


def inline_modules(text):
    """(start, end, name) of every inline `mod name { ... }`."""
    out = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        out.append((m.end() - 1, matching_brace(text, m.end() - 1), m.group(1)))
    return out


def references(parts, text):
    """Module paths that `text` (the file of module `parts`) names."""
    inline = inline_modules(text)

    def here(pos):
        return list(parts) + [n for (s, e, n) in inline if s < pos < e]

    refs = []
    for m in re.finditer(r"\bcrate((?:::\w+)+)", text):
        refs.append(m.group(1).split("::")[1:])
    for m in re.finditer(r"\buse\s+crate::\{([^;]*)\};", text, re.S):
        refs.extend(group_items([], m.group(1)))
    for m in re.finditer(r"\b(super|self)((?:::\w+)+)", text):
        base = here(m.start())
        rest = m.group(2).split("::")[1:]
        if m.group(1) == "super":
            base = base[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
        refs.append(base + rest)
    for m in re.finditer(r"\buse\s+(super|self)((?:::super)*)::\{([^;]*)\};", text, re.S):
        base = here(m.start())
        if m.group(1) == "super":
            base = base[:-1]
        for _ in range(m.group(2).count("super")):
            base = base[:-1]
        refs.extend(group_items(base, m.group(3)))
    return refs


def group_items(base, group):
    items = []
    for item in re.split(r",(?![^{]*\})", group):
        item = item.strip()
        if item:
            items.append(base + [p for p in item.split("{")[0].split("::") if p.strip()])
    return items


def imports(mods):
    """File -> set of files it imports."""
    edges = {}
    for parts, rel in mods.items():
        if os.path.basename(rel) == "tests.rs":
            continue
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            text = code_only(f.read())
        found = set()
        for ref in references(parts, text):
            ref = [r.strip() for r in ref if r.strip() and r.strip() != "self"]
            for n in range(len(ref), 0, -1):
                target = mods.get(tuple(ref[:n]))
                if target:
                    if target != rel and os.path.basename(target) != "tests.rs":
                        found.add(target)
                    break
        edges[rel] = found
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def rules():
    """Code map rows: (place, never, allowed)."""
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Code map", 1)
    if len(section) < 2:
        sys.exit(f"{doc} has no '## Code map' section")
    rows = []
    lines = section[1].split("\n## ", 1)[0].splitlines()
    header = None
    for line in lines:
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(cells[0]) <= set("-: "):
            continue
        row = dict(zip(header, cells))
        place = re.findall(r"`([^`]+)`", row.get("folder or file", ""))
        never = re.findall(r"`([^`]+)`", row.get("never imports", ""))
        if row.get("never imports", "").strip() == "*":
            never = ["*"]
        allowed = re.findall(r"`([^`]+)`", row.get("except", ""))
        for p in place:
            rows.append((p, never, allowed))
    if not rows:
        sys.exit(f"the code map in {doc} has no rows")
    return rows


def module_of(rel):
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def rule_for(rel, table):
    best = None
    for place, never, allowed in table:
        if place.endswith("/"):
            hit = rel.startswith(place)
        else:
            hit = rel == place
        if hit and (best is None or len(place) > len(best[0])):
            best = (place, never, allowed)
    return best


def under(module, path):
    return module == path or module.startswith(path + "::")


def main():
    mods = module_files()
    edges = imports(mods)
    table = rules()
    problems = []
    for comp in cycles(edges):
        problems.append(f"import cycle of {len(comp)} files: " + ", ".join(comp))
    known = {module_of(r) for r in mods.values()}
    for place, never, allowed in table:
        target = place.rstrip("/").removesuffix(".rs").removesuffix("/mod").replace("/", "::")
        if target not in known:
            problems.append(f"the code map names {place}, which is not in {src}")
    for rel, targets in sorted(edges.items()):
        rule = rule_for(rel, table)
        if rule is None:
            continue
        place, never, allowed = rule
        own = place.rstrip("/").removesuffix(".rs").replace("/", "::")
        for target in sorted(targets):
            module = module_of(target)
            if under(module, own) or any(under(module, a) for a in allowed):
                continue
            if "*" in never or any(under(module, n) for n in never):
                problems.append(
                    f"{rel} imports {module}, which the code map forbids for {place}"
                )
    uncovered = sorted(r for r in edges if rule_for(r, table) is None)
    for rel in uncovered:
        problems.append(f"{rel} has no row in the code map")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"imports: {len(edges)} files, no cycle, every code map rule holds")


if __name__ == "__main__":
    main()
