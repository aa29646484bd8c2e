"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    # the numbers quoted in the README's comments are what the code prints
    for quoted in re.findall(r"print\(count_params\(pipe\)\)\s+# .*?: (\d+)", README.read_text()):
        assert quoted in out
