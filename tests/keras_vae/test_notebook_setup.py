"""keras_vae.utils.notebook (budget variable, silenced start-up output) and plots that leave the backend alone."""
import os
import subprocess
import sys

import pytest

from keras_vae.utils.notebook import BUDGET_VARIABLE, budget, silenced_stderr_fd


def test_budget_variable(monkeypatch):
    monkeypatch.delenv(BUDGET_VARIABLE, raising=False)
    assert budget() == "full"
    monkeypatch.setenv(BUDGET_VARIABLE, " Tiny ")
    assert budget() == "tiny"
    monkeypatch.setenv(BUDGET_VARIABLE, "huge")
    with pytest.raises(ValueError, match="choose 'tiny' or 'full'"):
        budget()


def test_silenced_stderr_fd_drops_only_what_is_written_inside(capfd):
    os.write(2, b"before\n")
    with silenced_stderr_fd():
        os.write(2, b"inside\n")  # what C++ start-up logging does
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nafter\n"


@pytest.mark.slow
def test_importing_plots_keeps_the_matplotlib_backend(tmp_path):
    """A notebook's inline backend must survive `import keras_vae.evaluation.plots` (figures were lost before)."""
    code = ("import matplotlib; matplotlib.use('svg'); import keras_vae.evaluation.plots, keras_vae.training.loop; "
            "import numpy as np; from matplotlib.figure import Figure; "
            "assert matplotlib.get_backend().lower() == 'svg', matplotlib.get_backend(); "
            f"keras_vae.evaluation.plots._save(keras_vae.evaluation.plots._grid_figure(np.zeros((4, 4, 1)), 't'), {str(tmp_path / 'g.png')!r})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-1500:]
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
