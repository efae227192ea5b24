"""The README's test command is the one CI runs, and its Python example runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    first_block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    test_command = first_block.strip().splitlines()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in test_command
    assert test_command in ci


def test_readme_python_example_runs():
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["res"].operator.shape == (320, 320)
    assert namespace["sol"].x.shape == (32, 320)
