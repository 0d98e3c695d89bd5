"""data_prep must never import torch: it is the layer below `detect`."""

import subprocess
import sys


def test_data_prep_does_not_import_torch():
    code = (
        "import sys, pkgutil, importlib, data_prep\n"
        "for m in pkgutil.walk_packages(data_prep.__path__, 'data_prep.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m.startswith('torchvision')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"data_prep imported: {out.stdout.strip()}"
