"""The front door and the docs site: README.md stays short and keeps the Quick start that CI runs
verbatim, no relative link of README.md or docs/ points at a missing file, and the site builds
with `mkdocs build --strict` (where mkdocs is installed; CI's docs job always builds it)."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_BYTES = 10_752  # 10.5 KB: the "at most about 10 KB"


def ci_quick_start_extractor() -> str:
    """The Python that .ci/run feeds to python3 to cut the Quick start blocks out of README.md."""
    script = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"python3 - \"\$repo/README.md\" \"\$work\" <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    assert match, ".ci/run no longer extracts the Quick start blocks the way this test expects"
    return match.group(1)


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {README_MAX_BYTES})"


def test_readme_keeps_the_quick_start_that_ci_runs(tmp_path):
    # Run .ci/run's own extraction, so this test and CI cannot disagree about what it finds.
    subprocess.run([sys.executable, "-c", ci_quick_start_extractor(), str(README), str(tmp_path)], check=True)
    train, test = (tmp_path / "train.sh").read_text(), (tmp_path / "test.sh").read_text()
    assert "pip install . " in train and train.rstrip().endswith("python -m mgr.train"), train
    assert 'pip install ".[test]"' in test and test.rstrip().endswith("python -m pytest"), test


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_link_targets(markdown: str) -> list[str]:
    """The targets of the markdown's links that point at files, outside code blocks and code spans."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = [m.group(1) for m in LINK.finditer(prose)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_link_targets(path.read_text()):
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {target}")
    return broken


def test_the_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "there.md").write_text("# There\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#there) [web](https://example.org) [gone](missing.md)\n"
                    "`[code](nowhere.md)`\n```\n[block](nowhere.md)\n```\n")
    assert broken_links(page) == [f"{page}: missing.md"]


def test_every_relative_link_of_the_readme_and_the_docs_exists():
    pages = [README, *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(pages) > 10, "docs/ holds fewer pages than expected"
    broken = [link for page in pages for link in broken_links(page)]
    assert not broken, "links to missing files:\n" + "\n".join(broken)


@pytest.mark.skipif(not (importlib.util.find_spec("mkdocs") and importlib.util.find_spec("material")),
                    reason='mkdocs or its Material theme is not installed (pip install ".[docs]"); '
                           "CI's docs job builds the site")
def test_the_site_builds_strictly_and_holds_the_benchmark_results(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    # docs/results.md includes benchmarks/RESULTS.md: its plain section titles are on the page.
    results = (site / "results" / "index.html").read_text()
    titles = re.findall(r"^#+ ([\w ,.():-]+)$", (ROOT / "benchmarks" / "RESULTS.md").read_text(), re.M)
    assert titles, "benchmarks/RESULTS.md has no plain section title to look for"
    missing = [t for t in titles if html.escape(t) not in results]
    assert not missing, f"the results page lacks these sections of benchmarks/RESULTS.md: {missing}"
