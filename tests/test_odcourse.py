"""The helper package: setup report, visible-check reporting, explorers driven by their controls."""
import subprocess
import sys

import pytest
import torch
from matplotlib.figure import Figure

import odcourse
from odcourse.checks import CheckFailed, NotImplementedYet, Report
from odcourse.colab import MatmulExplorer, available_devices, matmul_gflops


def test_setup_reports_versions_and_device(capsys):
    odcourse.setup()
    line = capsys.readouterr().out
    assert f"torch {torch.__version__}" in line and "Colab: no" in line
    assert ("GPU: none" in line) == (not torch.cuda.is_available())


def test_in_colab_is_false_here_and_true_with_google_colab(tmp_path):
    assert odcourse.in_colab() is False
    (tmp_path / "google" / "colab").mkdir(parents=True)
    (tmp_path / "google" / "colab" / "__init__.py").write_text("")
    code = "import odcourse; print(odcourse.in_colab())"
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_report_passes_and_fails_in_words(capsys):
    with Report("f") as report:
        report.expect(True, "never shown")
    assert capsys.readouterr().out.strip() == "f: 1/1 visible checks passed"
    with pytest.raises(CheckFailed) as failure:
        with Report("f") as report:
            report.expect(True, "fine")
            report.expect(False, "the boxes must be ordered by score")
    assert str(failure.value) == "f: 1 of 2 visible checks failed:\n  - the boxes must be ordered by score"


def test_report_turns_exceptions_into_findings():
    def stub():
        raise NotImplementedError()

    def broken():
        return [][1]

    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        with Report("stub") as report:
            report.call(stub)
    with pytest.raises(CheckFailed, match=r"broken raised IndexError: .* \(line \d+ of broken\)"):
        with Report("broken") as report:
            report.call(broken)


def test_matmul_gflops_is_a_positive_speed():
    assert matmul_gflops(64, "cpu", min_run_time=0.01) > 0
    assert available_devices()[0] == "cpu"
    assert ("cuda" in available_devices()) == torch.cuda.is_available()


def test_matmul_explorer_redraws_when_its_controls_change(monkeypatch):
    monkeypatch.setattr("odcourse.colab.matmul_gflops", lambda n, device, dtype: n / 64.0)
    explorer = MatmulExplorer(n=256)
    first = explorer.redraw()
    assert isinstance(first, Figure)
    line = first.axes[0].lines[0]
    assert list(line.get_xdata()) == [64, 128, 256]
    explorer.controls["n"].value = 1024  # what a student moving the slider does
    second = explorer.figure
    assert second is not first
    assert list(second.axes[0].lines[0].get_xdata()) == [64, 128, 256, 512, 1024]
    assert "16.0 GFLOP/s" in second.axes[0].get_legend().get_texts()[1].get_text()
    explorer.controls["dtype"].value = "float64"
    assert explorer.figure.axes[0].get_title() == "Matrix product speed on cpu (float64)"


def test_explorer_draws_one_static_figure_while_the_book_builds(monkeypatch):
    monkeypatch.setenv("ODCOURSE_STATIC", "1")
    monkeypatch.setattr("odcourse.colab.matmul_gflops", lambda n, device, dtype: 1.0)
    shown = []
    monkeypatch.setattr("odcourse.widgets.display", shown.append)
    MatmulExplorer(n=128).show()
    assert len(shown) == 1 and isinstance(shown[0], Figure)
    monkeypatch.setenv("ODCOURSE_STATIC", "0")
    shown.clear()
    MatmulExplorer(n=128).show()
    assert type(shown[0]).__name__ == "VBox"  # live controls above the output area


def test_glue_writes_the_output_myst_nb_glue_writes():
    """The book quotes executed numbers with {glue}: odcourse.glue (Colab has no myst-nb) must leave
    the same output as myst_nb.glue(name, value, display=False), and display nothing else; with a
    format, the formatted text (without the quotes a string's repr would add)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import odcourse\nodcourse.glue("share", 0.457)'),
        nbformat.v4.new_code_cell('import myst_nb\nmyst_nb.glue("share", 0.457, display=False)'),
        nbformat.v4.new_code_cell('odcourse.glue("percent", 0.4567, ".1%")'),
    ])
    NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    ours, theirs, formatted = (cell.outputs for cell in notebook.cells)
    assert len(ours) == 1 and ours[0].output_type == "display_data"
    assert ours[0].data == theirs[0].data == {"application/papermill.record/text/plain": "0.457"}
    assert ours[0].metadata == theirs[0].metadata
    assert len(formatted) == 1 and formatted[0].data == {"application/papermill.record/text/plain": "45.7%"}
