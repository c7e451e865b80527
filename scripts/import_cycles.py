#!/usr/bin/env python3
"""File-level import circles in Rust crates: `python3 scripts/import_cycles.py DIR...`.

A file uses another when it names it through `crate::` or `super::` paths (use
declarations and inline paths, `{}` groups included), or, for a folder's `mod.rs`, a
declared child module by name; comments and `#[cfg(test)]` parts do not count. Prints
each circle with its edges and exits 1 when there is one (the test command runs it on
`src` and `actors/src`), so "no import circles between files" (ARCHITECTURE.md) holds.
"""
import os, re, sys


def circles(root):
    files = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)[:-3].split(os.sep)
                if rel[-1] in ('mod', 'lib', 'main'):
                    rel = rel[:-1]
                files[tuple(rel)] = p
    def resolve(path):
        # longest prefix that is a file module
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in files:
                return tuple(path[:n])
        return None
    edges = {m: set() for m in files}
    for m, p in files.items():
        src = '\n'.join(l for l in open(p).read().split('\n') if not l.lstrip().startswith('//'))
        # strip test modules roughly: cut at '#[cfg(test)]'
        cut = src.find('#[cfg(test)]')
        if cut >= 0: src = src[:cut]
        is_dir = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
        # expand use-groups superficially: capture crate::a::b and super::a
        for mt in re.finditer(r'\b(crate|super(?:::super)*)::(?:([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)(::\{([^}]*)\})?|\{([^}]*)\})', src):
            base, rest, _, group, top = mt.groups()
            if rest is None:
                rest, group = '', top
            if base == 'crate':
                prefix = []
            else:
                ups = base.count('super')
                here = list(m) if is_dir else list(m[:-1])
                prefix = here[:len(here) - (ups - 1)] if ups > 1 else here
            head = [x for x in rest.split('::') if x]
            paths = [prefix + head] if head else []
            if group:
                for g in group.split(','):
                    g = g.strip().split(' as ')[0].split('::')
                    if g and g[0] and g[0] != 'self':
                        paths.append(prefix + head + g)
            for path in paths:
                t = resolve(path)
                if t is not None and t != m and t != ():
                    # a reference to a parent dir module's item counts as an edge to that module
                    edges[m].add(t)
        if is_dir:
            for child in re.findall(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', src, re.M):
                t = tuple(list(m) + [child])
                if t in files and re.search(r'(?<![:\w])' + child + r'::', src):
                    edges[m].add(t)
    # tarjan SCC
    index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    for v in files:
        if v not in index: strong(v)
    return sccs, edges


def main():
    found = 0
    for root in sys.argv[1:]:
        sccs, edges = circles(root)
        for c in sccs:
            found += 1
            print(f"{root}: import circle:", ", ".join("/".join(x) or "lib" for x in sorted(c)))
            for a in sorted(c):
                for b in sorted(edges[a] & set(c)):
                    print("   ", "/".join(a), "->", "/".join(b))
    print(f"{found} import circles in {', '.join(sys.argv[1:])}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
