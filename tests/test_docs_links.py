"""The user's guide stays usable: README.md is short, every relative link in it and in docs/ lands on a file (and,
for `#anchor` links into Markdown, on a heading), and neither speaks of the project's own history."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from .conftest import ROOT

README_MAX_LINES = 350
HISTORY = re.compile(r"issue \d+|session \d+|\.\./shared", re.IGNORECASE)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target), with an optional "title"; the text may hold one level of brackets
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)   # http:, https:, mailto:, ...


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)


def guide_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, everything but letters, digits, spaces,
    hyphens and underscores dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)    # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|\*)(\S(?:.*?\S)?)\1", r"\2", text)  # bold and italic markers
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, GitHub-style: a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    return [m.group(1).strip("<>") for m in LINK.finditer(_prose(path.read_text(encoding="utf-8")))]


def broken_links(path: Path) -> list[str]:
    bad = []
    for target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {_rel(dest)}")
        elif ROOT not in dest.parents and ROOT in path.parents:
            bad.append(f"{target}: outside the repository")
    return bad


def test_slugs_follow_github():
    assert slug("Translation (`translation`)") == "translation-translation"
    assert slug("Performance: the pipeline") == "performance-the-pipeline"
    assert slug("Running on a cluster and sharing through DVC") == "running-on-a-cluster-and-sharing-through-dvc"
    assert slug("**C1** – attention beats none") == "c1--attention-beats-none"
    assert slug("params.yaml") == "paramsyaml"


def test_link_checker_sees_a_broken_link_and_ignores_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [gone](missing.md) ![img](nope.png) [web](https://example.org)\n"
                    "`[code](not-a-link.md)`\n\n```\n[fenced](also-not.md)\n```\n[bad anchor](#nowhere)\n")
    assert sorted(links(page)) == sorted(["#top", "missing.md", "nope.png", "https://example.org", "#nowhere"])
    bad = broken_links(page)
    assert len(bad) == 3 and any("missing.md" in b for b in bad) and any("nope.png" in b for b in bad)
    assert any("#nowhere" in b for b in bad)


def test_every_relative_link_of_the_guide_resolves():
    files = guide_files()
    assert (ROOT / "docs").is_dir() and len(files) > 1
    bad = {_rel(p): b for p in files if (b := broken_links(p))}
    assert not bad, bad


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_guide_does_not_speak_of_the_projects_history():
    found = []
    for path in guide_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if m := HISTORY.search(line):
                found.append(f"{_rel(path)}:{number}: {m.group(0)!r}")
    assert not found, found
