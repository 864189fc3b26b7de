"""docs/benchmarks.md keeps one generated section per benchmark between its own markers, and
benchmarks/run_all.py rewrites only the sections it was given, keeping every hand-written line."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# run_all.py is a script beside the other benchmarks; loaded by path (its top level needs only the
# standard library), so nothing is added to the import path.
_spec = importlib.util.spec_from_file_location("run_all", REPO / "benchmarks" / "run_all.py")
assert _spec is not None and _spec.loader is not None
run_all = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_all)

MARKER = re.compile(r"<!-- measured:(\w+) (begin|end)")


def test_every_measured_section_of_the_doc_is_one_benchmark_between_its_own_markers():
    found = MARKER.findall((REPO / "docs" / "benchmarks.md").read_text())
    names = [name for name, kind in found if kind == "begin"]
    assert found == [(name, kind) for name in names for kind in ("begin", "end")], "a begin without its end, or nested markers"
    assert len(names) == len(set(names)) and set(names) <= set(run_all.BENCHES)


@pytest.fixture
def doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "benchmarks.md"
    path.write_text("\n\n".join([
        "# Benchmarks", "Hand-written before.",
        run_all.BEGIN.format(name="cost"), "## Cost\n\nold cost figures", run_all.END.format(name="cost"),
        "Hand-written analysis of the cost.",
        run_all.BEGIN.format(name="memory"), "## Memory\n\nold memory figures", run_all.END.format(name="memory"),
        "Hand-written after.",
    ]) + "\n")
    monkeypatch.setattr(run_all, "DOC", path)
    return path


def test_only_the_given_sections_are_rewritten_and_the_hand_written_text_is_kept(doc: Path):
    added = run_all.write_doc({"cost": ["## Cost", "", "new cost figures"]})
    text = doc.read_text()
    assert added == [] and "new cost figures" in text and "old cost figures" not in text
    assert "old memory figures" in text
    for line in ("Hand-written before.", "Hand-written analysis of the cost.", "Hand-written after."):
        assert text.count(line) == 1
    assert text.index("new cost figures") < text.index("Hand-written analysis of the cost.") < text.index("old memory figures")


def test_a_section_not_in_the_doc_yet_is_added_at_its_end(doc: Path):
    assert run_all.write_doc({"peers": ["## Peers", "", "figures"]}) == ["peers"]
    text = doc.read_text()
    assert text.rstrip().endswith(run_all.END.format(name="peers")) and text.index("Hand-written after.") < text.index("## Peers")


def test_a_section_says_when_and_how_it_was_measured():
    line = run_all.run_line({"date": "2026-11-29", "cpus": 2, "python": "3.13.0", "load": "0.5, 1.0, 2.5", "seconds": 121})
    assert "2026-11-29" in line and "0.5, 1.0, 2.5" in line and "benchmarks/run_all.py" in line
    by_hand = run_all.run_line({"date": "2026-11-29", "cpus": 2, "python": "3.13.0", "load": "0.5", "seconds": 1,
                                "by": "`gateway_bench.py --latencies 0`"})
    assert "gateway_bench.py --latencies 0" in by_hand and "run_all.py" not in by_hand
    assert "before run dates" in run_all.run_line(None)
