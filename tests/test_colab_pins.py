"""Colab's runtime, pinned: requirements/colab.txt and colab-2026.01.txt are what
`python -m coursetools.colab_pins` writes from the published pip freezes (kept in
tests/data/colab/, from googlecolab/backend-info), and the command refuses bad input in words."""
import pytest

from coursetools import colab_like, colab_pins
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "colab"
FREEZES = {colab_pins.CURRENT: DATA / "pip-freeze.gpu.a724079.txt", colab_pins.OLDEST: DATA / "pip-freeze.gpu.bd8aaa4.txt"}


@pytest.mark.parametrize("pins", list(FREEZES), ids=lambda p: p.name)
def test_pins_are_the_published_freeze_rewritten(pins, tmp_path):
    committed = colab_pins.runtime(pins)
    output = tmp_path / pins.name
    assert colab_pins.main([str(FREEZES[pins]), "--python", committed["python"], "--source", committed["source"],
                            "--output", str(output)]) == 0
    assert output.read_text() == pins.read_text()


def test_the_runtimes_are_the_ones_the_course_was_checked_against():
    current, oldest = colab_pins.runtime(colab_pins.CURRENT), colab_pins.runtime(colab_pins.OLDEST)
    assert (current["python"], current["pins"]["torch"], current["pins"]["torchvision"]) == ("3.13.15", "2.11.0", "0.26.0")
    assert (current["pins"]["numpy"], current["pins"]["ipywidgets"], current["pins"]["pycocotools"]) == \
        ("2.1.3", "7.7.1", "2.0.11")
    assert (oldest["python"], oldest["pins"]["torch"], oldest["pins"]["numpy"]) == ("3.12.12", "2.9.0", "2.0.2")
    for name in colab_pins.IMPORTED:
        assert name in current["pins"] and name in oldest["pins"]


def test_freeze_lines_are_read_as_pip_compares_them():
    freeze = colab_pins.read_freeze("torch==2.11.0+cu128\nJinja2==3.1.6\njupyter_client==7.4.9\n"
                                    "google-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\n# comment\n")
    assert freeze == {"torch": "2.11.0", "jinja2": "3.1.6", "jupyter-client": "7.4.9"}


def test_the_command_refuses_bad_input(tmp_path, capsys):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("numpy==2.1.3\n")
    for argv, words in [([str(tmp_path / "missing.txt")], "no such file"),
                        ([str(freeze)], "the freeze has no torch, torchvision"),
                        ([str(FREEZES[colab_pins.CURRENT]), "--python", "3.13"], "full Python version")]:
        with pytest.raises(SystemExit) as stopped:
            colab_pins.main(argv + (["--python", "3.13.15"] if "--python" not in argv else [])
                            + ["--source", "test", "--output", str(tmp_path / "out.txt")])
        assert stopped.value.code == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()
    with pytest.raises(ValueError, match="no '# python: X.Y.Z' line"):
        (tmp_path / "pins.txt").write_text("torch==2.11.0\n")
        colab_pins.runtime(tmp_path / "pins.txt")


def test_a_machine_without_colabs_python_falls_back_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))  # no versions there
    monkeypatch.setenv("PATH", str(tmp_path))
    python, version = colab_like.find_python("3.99.1")
    assert "this machine has no Python 3.99 (Colab's runtime has 3.99.1): using Python 3.11" in capsys.readouterr().out
    assert version.startswith("3.11")


def test_pyenvs_python_of_the_runtime_is_found(tmp_path, monkeypatch):
    found = colab_like.find_python("3.13.15")
    if not found[1].startswith("3.13"):
        pytest.skip("this machine has no Python 3.13 (the fallback is tested above)")
    assert found[1].startswith("3.13.")
