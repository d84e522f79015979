#!/usr/bin/env python3
"""Builds a Python wafka plugin into a WebAssembly component.

    build.py PLUGIN.py -o OUT.wasm [--wit DIR] [--componentize-py PATH] [-p DIR ...]

PLUGIN.py is a module with ``handle(event)`` and optionally ``init(config)`` (see the README).
The bindings are generated from the WIT (default: ../../wit beside this file) with
``componentize-py bindings`` into a temporary directory on every build, next to a two-line
entry module that hands the plugin's functions to the SDK; ``componentize-py componentize``
then builds the component. ``-p`` adds directories to the plugin's Python path (its other
modules and pure-Python dependencies).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SDK = Path(__file__).resolve().parent
WORLD = "plugin-lifecycle"
ENTRY = "wafka_entry"
RESERVED = {"wafka", "wit_world", "componentize_py_types", "componentize_py_runtime", ENTRY}


def default_componentize_py() -> str:
    """componentize-py beside this Python (a venv), else on PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("componentize-py")
    if found:
        return found
    sys.exit("build.py: componentize-py not found (pip install componentize-py)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plugin", type=Path, help="the plugin module, a .py file")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--wit", type=Path, default=SDK.parent.parent / "wit")
    parser.add_argument("--componentize-py", dest="tool", default=None)
    parser.add_argument("-p", "--python-path", action="append", type=Path, default=[])
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args()

    plugin = args.plugin.resolve()
    if plugin.suffix != ".py" or not plugin.is_file():
        sys.exit(f"build.py: {args.plugin} is not a .py file")
    module = plugin.stem
    if module in RESERVED or not module.isidentifier():
        sys.exit(f"build.py: the plugin module may not be named {module!r}")
    tool = args.tool or default_componentize_py()
    quiet = ["-q"] if args.quiet else []
    wit = ["-d", str(args.wit.resolve()), "-w", WORLD]

    with tempfile.TemporaryDirectory(prefix="wafka-py-") as tmp:
        tmp = Path(tmp)
        bindings = tmp / "bindings"
        subprocess.run([tool, *quiet, *wit, "bindings", str(bindings)], check=True)
        entry = tmp / "entry"
        entry.mkdir()
        (entry / f"{ENTRY}.py").write_text(
            "import wafka._world\n"
            f"import {module}\n"
            f"WitWorld = wafka._world.world_for({module})\n"
        )
        paths = [entry, plugin.parent, *(p.resolve() for p in args.python_path), SDK, bindings]
        out = args.output.resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        cmd = [tool, *quiet, *wit, "componentize", ENTRY, "-o", str(partial)]
        for p in paths:
            cmd += ["-p", str(p)]
        # No VIRTUAL_ENV: componentize-py would add that venv's site-packages (the build tools)
        # to the plugin's path.
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        subprocess.run(cmd, check=True, cwd=tmp, env=env)
        os.replace(partial, out)


if __name__ == "__main__":
    main()
