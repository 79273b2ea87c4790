"""The README's examples run exactly as shown, each on its own: a reader may copy any one
block into a fresh interpreter."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[tuple[int, str]]:
    """Every ```python block of the README with the line its code starts on."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_demo_then_test():
    commands = re.findall(r"^make (demo|test)$", README.read_text(encoding="utf-8"), flags=re.M)
    assert commands[:2] == ["demo", "test"]


def test_readme_has_examples():
    assert len(python_blocks()) >= 10


@pytest.mark.parametrize("line, block", python_blocks(), ids=[f"line{line}" for line, _ in python_blocks()])
def test_each_readme_example_runs_on_its_own(line, block, capsys):
    code = compile("\n" * (line - 1) + block, str(README), "exec")  # tracebacks name README's own lines
    exec(code, {"__name__": f"readme_line_{line}"})
    if "print(embedding)" in block:
        assert "Embedding(10000, 300, padding_idx=0, max_norm=5.0, scale_grad_by_freq=True)" in capsys.readouterr().out
