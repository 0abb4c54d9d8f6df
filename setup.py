"""The optional compiled build: SIPGUARD_COMPILE=1 compiles the call path with mypyc.

Everything else about the package is in pyproject.toml. By default the package installs as
plain Python (what `make run` and the tests use). With SIPGUARD_COMPILE=1 (`make compiled`,
the Docker image, `make bench`), mypyc turns the modules below into one C extension: the
same typed source, checked by mypy's own compiler, run without the interpreter's dispatch.
In memory it nearly halves the SIP core's cost per call (README, Performance).

Only the synchronous core is compiled: SIP parsing and transactions, the policy decision,
the in-memory index and the datagram edge that feeds them. Each .py stays beside its
extension, so a traceback still names the source line.
"""

import os
from pathlib import Path

from setuptools import setup

COMPILED = [
    "sipguard/sip",
    "sipguard/policy",
    "sipguard/store/index.py",
    "sipguard/transport/driver.py",
    "sipguard/transport/udp.py",
]
# In-memory facts for tests, which subclass them: compiled classes cannot be subclassed.
INTERPRETED = {"sipguard/policy/facts.py"}


def _compiled_modules() -> list[str]:
    paths: list[str] = []
    for entry in COMPILED:
        found = Path("src") / entry
        files = sorted(found.glob("*.py")) if found.is_dir() else [found]
        paths += [
            str(f) for f in files
            if f.name != "__init__.py" and str(f.relative_to("src")) not in INTERPRETED
        ]
    return paths


ext_modules = []
if os.environ.get("SIPGUARD_COMPILE") == "1":
    from mypyc.build import mypycify

    # One C file per module: gcc takes about a minute for them, half again as long for one.
    ext_modules = mypycify(_compiled_modules(), opt_level="3", multi_file=True)

setup(ext_modules=ext_modules)
