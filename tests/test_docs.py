"""README, BENCHMARKS and docs/ speak of the product as it is: no words about how it was built, and every repository
file, module or results file they cite exists. The code cites no design notes that live outside the repository."""
import importlib
import importlib.util
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
PROCESS_WORDS = re.compile(r"\bsessions?\b|\bissues?\s+#?\d+|/tmp/|\blent\b", re.IGNORECASE)
# A path is a citation of this repository when it starts with one of its top-level entries.
TOP_LEVEL = ("src/", "configs/", "benchmarks/", "docs/", "examples/", "tests/", "data/", ".ci/")
TOP_FILES = {"README.md", "BENCHMARKS.md", "Makefile", "pyproject.toml"}
OUTSIDE_NOTES = re.compile(r"reference/\w+\.md|\bDESIGN\b|\bmodels\.md\b|\bssm_kernels\.md\b|\bevaluation\.md\b")


def process_words(text: str) -> list[str]:
    """Each line (numbered from 1) that names how the project was built."""
    return [f"line {n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if PROCESS_WORDS.search(line)]


def _expand_braces(path: str) -> list[str]:
    """``a_{b,c}{,_d}.yaml`` -> the four names (shell brace expansion, no nesting)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    options = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(choice) for choice in itertools.product(*options)]


def cited_paths(text: str) -> set[str]:
    """Repository paths in backticks or markdown links: a top-level folder or file of the repository, first."""
    tokens = re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s#]+)", text)
    paths = set()
    for token in tokens:
        token = token.split("::")[0].rstrip(".,:;")
        if "<" in token or "://" in token:
            continue
        if token.startswith(TOP_LEVEL) or token in TOP_FILES:
            paths.update(_expand_braces(token))
    return paths


def missing_paths(text: str, root: Path = ROOT) -> list[str]:
    """Cited repository paths (globs allowed) that match no file or folder under ``root``."""
    return sorted(p for p in cited_paths(text) if not (any(root.glob(p)) if "*" in p else (root / p).exists()))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is not a package
        return False


def missing_modules(text: str) -> list[str]:
    """Cited ``vidmamba.x.y`` names that are neither a module nor an attribute of one."""
    missing = []
    for name in sorted(set(re.findall(r"`(vidmamba(?:\.\w+)+)", text))):
        parts = name.split(".")
        k = max(i for i in range(1, len(parts) + 1) if _is_module(".".join(parts[:i])))
        obj = importlib.import_module(".".join(parts[:k]))
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                missing.append(name)
                break
            obj = getattr(obj, attr)
    return missing


def test_checkers_catch_process_words_and_missing_files():
    bad = ("Measured in session 6 (issue 12) on a lent machine; output in /tmp/x.json.\n"
           "See `configs/no_such.yaml`, [notes](docs/no_such.md), `benchmarks/results_*.nope`, "
           "`configs/mlvtg_{qvhighlights,nope}.yaml`.\nFine: `configs/hieramamba_clip.yaml`, `my_run.yaml`.")
    assert len(process_words(bad)) == 1 and process_words("An assessment of the lentil") == []
    assert missing_paths(bad) == ["benchmarks/results_*.nope", "configs/mlvtg_nope.yaml", "configs/no_such.yaml",
                                  "docs/no_such.md"]
    assert missing_modules("`vidmamba.ssm.selective_scan`, `vidmamba.engine.grounding.train`") == [
        "vidmamba.engine.grounding.train"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_speak_of_the_product_and_cite_what_exists(path):
    text = path.read_text(encoding="utf-8")
    assert process_words(text) == []
    assert missing_paths(text) == []
    assert missing_modules(text) == []
    assert not OUTSIDE_NOTES.search(text), OUTSIDE_NOTES.search(text)


def test_code_cites_no_design_notes_outside_the_repository():
    files = [p for folder in ("src", "configs", "tests", "benchmarks", "examples")
             for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".yaml", ".md"} and p.name != "test_docs.py"]
    found = [f"{p.relative_to(ROOT)}:{n}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE_NOTES.search(line)]
    assert found == []
