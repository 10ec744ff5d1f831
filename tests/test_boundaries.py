"""Package boundaries: the device runtime never imports torch."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import edge_runtime
for module in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."):
    importlib.import_module(module.name)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("modules:", len([m for m in sys.modules if m.startswith("edge_runtime")]))
assert not loaded, loaded
"""


def test_edge_runtime_never_imports_torch():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "modules: " in result.stdout and int(result.stdout.split()[-1]) >= 3
