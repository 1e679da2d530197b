"""The configuration snippets of docs/orchestrators.md, as the tests use them: what the
docs tell a user to write is what the tests run."""
import os

from tests.conftest import REPO

DOC = os.path.join(REPO, "docs", "orchestrators.md")
# Where the docs say pyrun is installed; the tests put their own build there.
DOC_PYRUN = "/usr/local/bin/pyrun"


def snippet(name: str, pyrun: str) -> str:
    """The fenced block that follows the line `<!-- snippet: NAME -->` in the docs, with
    the docs' pyrun path replaced by `pyrun`."""
    with open(DOC) as f:
        lines = f.read().splitlines()
    marker = f"<!-- snippet: {name} -->"
    try:
        start = lines.index(marker) + 1
    except ValueError:
        raise AssertionError(f"{DOC} has no {marker}") from None
    assert lines[start].startswith("```"), f"{marker} is not followed by a fenced block"
    end = lines.index("```", start + 1)
    return "\n".join(lines[start + 1:end]).replace(DOC_PYRUN, pyrun) + "\n"
