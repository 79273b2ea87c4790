"""The README's examples run exactly as shown."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_starts_with_demo_then_test():
    commands = re.findall(r"^make (demo|test)$", README.read_text(encoding="utf-8"), flags=re.M)
    assert commands[:2] == ["demo", "test"]


def test_readme_examples_run(capsys):
    blocks = python_blocks()
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Embedding(10000, 300, padding_idx=0, max_norm=5.0, scale_grad_by_freq=True)" in printed
