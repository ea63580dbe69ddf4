"""The chapters' structure: an opening with what the reader will be able to do, a summary and five
folded check-your-understanding questions before the exercises; plotting code folded; every
number the prose quotes from the page's execution glued from it; the feature pyramid taught once
(chapter 5) and referred to elsewhere."""
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]-*.ipynb"))

#: Code that draws with matplotlib itself (the course's own one-call helpers, e.g. chapter 10's
#: detect, are what students learn and stay visible).
PLOTTING = re.compile(r"\bplt\.(subplots|figure|imshow|plot|bar|barh|scatter|axis|title|xlabel|ylabel|legend|"
                      r"colorbar|tight_layout|gca)\b|^\s*(ax|axes|fig)\b[.\[]|\bdraw_blocks\(", re.M)
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(\w+)")
GLUE_CALL = re.compile(r"\bglue\(\s*(f?)\"([\w{}.\[\]' ]+)\"")


def cells(path):
    return json.loads(path.read_text())["cells"]


def markdown(path):
    return [("".join(c["source"])) for c in cells(path) if c["cell_type"] == "markdown"]


def code(path):
    return [c for c in cells(path) if c["cell_type"] == "code"]


def sections(path):
    """(heading, text up to the next level-2 heading) for each level-2 heading of the chapter."""
    text = "\n\n".join(markdown(path))
    parts = re.split(r"^(## .+)$", text, flags=re.M)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts), 2)]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_opens_with_what_it_teaches(path):
    opening = markdown(path)[0]
    assert opening.startswith("# ")
    assert "**After this chapter you will be able to**" in opening
    assert len(re.findall(r"^- ", opening.split("**After this chapter you will be able to**")[1], re.M)) >= 3


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_ends_with_a_summary_and_five_folded_questions_before_the_exercises(path):
    headings = [heading for heading, _ in sections(path)]
    assert "## Summary" in headings and "## Check your understanding" in headings
    assert headings.index("## Summary") + 1 == headings.index("## Check your understanding")
    if "## Your turn" in headings:
        assert headings.index("## Check your understanding") < headings.index("## Your turn")
    questions = dict(sections(path))["## Check your understanding"]
    numbered = re.findall(r"^(\d+)\. ", questions, re.M)
    assert numbered == ["1", "2", "3", "4", "5"]
    assert questions.count("<details><summary>Answer</summary>") == 5
    assert questions.count("</details>") == 5


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_plotting_code_is_folded(path):
    unfolded = [c["id"] for c in code(path) if PLOTTING.search("".join(c["source"]))
                and "hide-input" not in c.get("metadata", {}).get("tags", [])]
    assert not unfolded, f"cells {unfolded} draw with matplotlib but are not tagged hide-input"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_quoted_result_is_glued_from_the_execution(path):
    quoted = set(GLUE_ROLE.findall("\n".join(markdown(path))))
    calls = GLUE_CALL.findall("\n".join("".join(c["source"]) for c in code(path)))
    exact = {name for f, name in calls if not f}
    prefixes = [name.split("{")[0] for f, name in calls if f]
    missing = {name for name in quoted if name not in exact and not any(name.startswith(p) for p in prefixes)}
    assert not missing, f"{sorted(missing)} are quoted with {{glue}} but never glued"
    unused = exact - quoted
    assert not unused, f"{sorted(unused)} are glued but never quoted"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_glued_name_is_in_the_cached_execution(path):
    """When the chapter has been executed (make book), each name the prose quotes is among the
    outputs of that execution, so the built page shows a number and not an error."""
    from coursetools.colab_like import cached_execution

    quoted = set(GLUE_ROLE.findall("\n".join(markdown(path))))
    if not quoted:
        pytest.skip("quotes nothing")
    try:
        executed = cached_execution(path)
    except Exception as error:  # no cache at all in a fresh clone
        pytest.skip(f"no cache: {error}")
    if executed is None:
        pytest.skip("not executed since its code last changed")
    recorded = {output["metadata"]["scrapbook"]["name"] for cell in executed.cells if cell.cell_type == "code"
                for output in cell.outputs if "scrapbook" in output.get("metadata", {})}
    assert quoted <= recorded, f"{sorted(quoted - recorded)} were not recorded by the execution"


def test_the_feature_pyramid_is_taught_once_and_referred_to_elsewhere():
    taught = [p.stem for p in CHAPTERS if "(fpn)=" in "\n".join(markdown(p))]
    assert taught == ["05-faster-rcnn"]
    for path in CHAPTERS:
        if path.stem == "05-faster-rcnn":
            continue
        text = "\n".join(markdown(path))
        if re.search(r"top-down|lateral", text):
            assert "<fpn>`" in text, f"{path.stem} describes the feature pyramid without referring to chapter 5"
