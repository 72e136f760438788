"""Checks that a shared library exports exactly the functions and variables
the public headers declare (tests/test_embed.c runs it).

usage: check_exports.py LIB HEADER...   (glassbox.h: the headers it includes)
Exported: `nm -D --defined-only LIB`. Declared: each identifier gb_NAME
followed by '(' (not '(*') in the headers outside comments and #define lines (a macro's
expansion, such as GB_AT's gb__ts_site_enter(...), counts: the macro needs it)
and not itself a macro. Prints each difference and exits 1 if any."""
import os
import re
import subprocess
import sys


def declared(paths):
    names, macros = set(), set()
    for p in paths:
        text = open(p).read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        for m in re.finditer(r"^\s*#\s*define\s+(gb_\w+)\(", text, flags=re.M):
            macros.add(m.group(1))
        # C++-only blocks (GB_AT's overloads) are inline, not exported
        text = re.sub(r"#ifdef __cplusplus\n}.*?#endif", " ", text, flags=re.S)
        # a type before a function pointer, "gb_status (*fn)(...)", is not a call
        names |= set(re.findall(r"\b(gb_\w+)\s*\((?!\*)", text))
    return names - macros


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split()[-2] in "TDBRVW"}


def main():
    lib, headers = sys.argv[1], []
    for h in sys.argv[2:]:  # an umbrella header stands for the headers it includes
        inc = re.findall(r'^#include "([^"]+)"', open(h).read(), flags=re.M)
        headers += [os.path.join(os.path.dirname(h), i) for i in inc] if h.endswith("glassbox.h") else [h]
    want, got = declared(headers), exported(lib)
    bad = False
    for name in sorted(got - want):
        print(f"exported but not declared in a public header: {name}")
        bad = True
    for name in sorted(want - got):
        print(f"declared but not exported: {name}")
        bad = True
    print(f"{len(got)} exports, {len(want)} declarations")
    sys.exit(1 if bad else 0)


main()
