"""glmflow.core must work without nipype (it is the numerical layer)."""

import subprocess
import sys

CODE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "nipype" or name.startswith("nipype."):
            raise ImportError("nipype is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
import importlib, pkgutil
import glmflow.core
names = [m.name for m in pkgutil.iter_modules(glmflow.core.__path__)]
for name in names:
    importlib.import_module(f"glmflow.core.{name}")
assert not any(m == "nipype" or m.startswith("nipype.") for m in sys.modules)
print(len(names))
"""


def test_core_imports_without_nipype():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 6  # design, data, glm, contrasts, io, errors, ...


def test_blocker_really_blocks():
    code = CODE.replace("import glmflow.core", "import nipype")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "blocked" in result.stderr
