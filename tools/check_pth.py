"""Fail when site-packages holds a .pth file nobody expects.

A .pth file runs code at every Python start; the compromised LiteLLM 1.82.8 installed
one to steal credentials. Editable installs and setuptools' own are known.
"""

import pathlib
import site
import sys

KNOWN = {"distutils-precedence.pth", "_sandboxing_egress_ca.pth"}

found = {p.name for d in site.getsitepackages() for p in pathlib.Path(d).glob("*.pth")}
unexpected = sorted(n for n in found - KNOWN if not n.startswith("__editable__."))
if unexpected:
    sys.exit(f"unexpected .pth files in site-packages: {', '.join(unexpected)}; "
             "inspect them before trusting this environment")
print(f".pth files in site-packages, all known: {', '.join(sorted(found)) or 'none'}")
