"""Importing pdunroll is backend-neutral: it imports none of torch, cupy, jax."""

import subprocess
import sys


def test_import_pulls_in_no_gpu_or_autodiff_framework():
    code = ("import sys, pdunroll; heavy = [m for m in ('torch', 'cupy', 'jax') if m in "
            "sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
