"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_blocks_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the export example writes m.onnx
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace = {}  # the blocks build on each other, as a reader runs them
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    # the numbers quoted in the README's comments are what the code prints
    for quoted in re.findall(r"print\(count_params\(pipe\)\)\s+# .*?: (\d+)", README.read_text()):
        assert quoted in out
