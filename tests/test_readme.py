"""The README's quick start runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    quick_start = blocks[0]
    assert len(quick_start.strip().splitlines()) <= 10
    exec(compile(quick_start, "README quick start", "exec"), {})
    score = float(capsys.readouterr().out.split()[0])
    assert 0.5 < score <= 1.0


def test_tabular_sequences_story_runs(capsys):
    # The README's second block: a raw transactions table, cross-validated.
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    story = next(block for block in blocks if "from_long_format" in block)
    exec(compile(story, "README tabular sequences", "exec"), {})
    score = float(capsys.readouterr().out.split()[0])
    assert 0.0 <= score <= 1.0
