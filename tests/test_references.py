"""The tree documents itself: the README is a user's page that links every docs/ page, and every
document or file path that code, tests, notebooks and docs cite exists in the repository (issue 30:
no definition the code implements lives outside the tree)."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("usage", "method", "evaluation", "performance", "results", "style")
README_MAX = 250
TEXT = (".py", ".c", ".h", ".inc", ".md", ".ipynb", ".toml", ".cfg", ".txt", ".json", ".sh")
TOP = ("docs", "benchmarks", "pacofr", "csrc", "tests", "notebooks", ".ci")
# files pacofr writes (a run's or an evaluation's outputs), named in prose, not documents of the tree
WRITTEN = {"eval.md", "table.md", "summary.md", "report.md", "wflw.md"}
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*\w\.(?:py|c|h|inc|md|json|ipynb|png|jsonl))(?![\w/-])"
                  % "|".join(re.escape(t) for t in TOP))
DOC = re.compile(r"(?<![\w./<>-])([\w-]+\.md)\b(?![\w/-])")


def tracked():
    """The repository's files as git tracks them (what a clean clone has), else what is on disk."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except OSError:
        out = None
    if out is not None and out.returncode == 0 and out.stdout.strip():
        return {p for p in out.stdout.splitlines() if (ROOT / p).exists()}
    return {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts}


def broken_references(files, read):
    """(file, reference) for every repository path or document name cited in ``files`` (their text
    from ``read``) that is not among ``files``: a path must be a tracked file or folder, a bare .md
    name the name of a tracked document or a file pacofr writes."""
    folders = {str(Path(f).parents[i]) for f in files for i in range(len(Path(f).parts) - 1)}
    names = {Path(f).name for f in files if f.endswith(".md")}
    bad = []
    for f in sorted(files):
        if not f.endswith(TEXT) or f.startswith("benchmarks/results/") or f == "tests/test_references.py":
            continue
        text = read(f)
        for ref in sorted(set(PATH.findall(text))):
            if ref.startswith("benchmarks/results/") and not f.endswith(".md"):
                continue   # where a script writes its output, not a citation
            if ref.rstrip(".") not in files and ref.rstrip("/") not in folders:
                bad.append((f, ref))
        for name in sorted(set(DOC.findall(text))):
            if name not in names and name not in WRITTEN:
                bad.append((f, name))
        if "shared/docs" in text:
            bad.append((f, "shared/docs"))
    return bad


def test_every_cited_file_is_in_the_tree():
    files = tracked()
    assert broken_references(files, lambda f: (ROOT / f).read_text(errors="replace")) == []


def test_the_reference_check_catches_a_missing_document():
    files = {"pacofr/a.py", "docs/method.md", "README.md"}
    text = {"pacofr/a.py": "see METHOD.md and docs/method.md, docs/gone.md, ../shared/docs/X",
            "docs/method.md": "README.md", "README.md": "eval.md is written by pacofr eval"}
    assert broken_references(files, text.get) == [("pacofr/a.py", "docs/gone.md"), ("pacofr/a.py", "METHOD.md"),
                                                  ("pacofr/a.py", "shared/docs")]


def test_readme_is_a_users_page_that_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") <= README_MAX, f"README.md has {readme.count(chr(10))} lines"
    assert [p for p in PAGES if not (ROOT / "docs" / f"{p}.md").is_file()] == []
    assert [p for p in PAGES if f"docs/{p}.md" not in readme] == []


@pytest.mark.parametrize("page", PAGES)
def test_each_doc_page_has_a_title_and_body(page):
    text = (ROOT / "docs" / f"{page}.md").read_text()
    assert text.startswith("# ") and len(text.split()) > 200
