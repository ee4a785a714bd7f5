"""docs/EXPERIMENTS.md is written by two generators, each owning one section between HTML-comment markers: the fair
comparison (experiments/fair_report.py) and the appendix of the old grid (experiments/report.py). Each replaces
only its own section, so either can run without the other's run folders."""

from __future__ import annotations

import sys
from pathlib import Path

TITLE = "# Experiments: SuperPos-Prompt on pretrained causal LMs (CPU)\n"
FAIR = "fair-report"
APPENDIX = "appendix"
ORDER = (FAIR, APPENDIX)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def skeleton() -> str:
    """An empty document with both sections in their order."""
    parts = [TITLE]
    for name in ORDER:
        begin, end = markers(name)
        parts.append(f"{begin}\n{end}\n")
    return "\n".join(parts)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` replaced by ``body`` (added in its place when the markers are missing)."""
    begin, end = markers(name)
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        others = [n for n in ORDER if n != name and markers(n)[0] in text]
        anchor = text.find(markers(others[0])[0]) if others and ORDER.index(name) < ORDER.index(others[0]) else -1
        block = f"{begin}\n{end}\n\n"
        text = text[:anchor] + block + text[anchor:] if anchor >= 0 else text.rstrip("\n") + "\n\n" + block
        start, stop = text.find(begin), text.find(end)
    return text[: start + len(begin)] + "\n" + body.strip("\n") + "\n" + text[stop:]


def section(text: str, name: str) -> str | None:
    begin, end = markers(name)
    start, stop = text.find(begin), text.find(end)
    return None if start < 0 or stop < start else text[start + len(begin) : stop].strip("\n")


def write_section(doc: Path, name: str, body: str) -> None:
    text = doc.read_text(encoding="utf-8") if doc.is_file() else skeleton()
    _write(doc, replace_section(text, name, body))


def print_or_fill(text: str, doc: Path | None, name: str) -> int:
    """A generator's output: printed, or (``--write doc``) put into section ``name`` of a hand-written ``doc`` that
    already carries its markers (bench/RESULTS.md, docs/DEFAULTS_STUDY.md). The exit code: 2 when the markers are
    missing (one line on stderr), else 0."""
    if doc is None:
        print(text)
        return 0
    current = doc.read_text(encoding="utf-8")
    begin, end = markers(name)
    if begin not in current or end not in current:
        print(f"error: {doc} has no {begin} ... {end} markers to fill", file=sys.stderr)
        return 2
    _write(doc, replace_section(current, name, text))
    return 0


def _write(doc: Path, text: str) -> None:
    from superpos_kernels.io import atomic_write

    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(doc, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
