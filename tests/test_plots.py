"""The end-of-training figures: written atomically, and the curves include the validation accuracy when logged."""
import matplotlib
import matplotlib.axes

matplotlib.use("Agg")

from core import plots
from core.runlog import read_history


def test_curves_plot_val_accuracy_from_the_run_log(tmp_path, monkeypatch):
    log = tmp_path / "log_run_x.txt"
    log.write_text(
        "=====\n"
        "Epoch: 1, Loss: 2.5, Lr: 0.001\nElapsed time: 3, Speed(s/batch): 0.1\n\n"
        "Overall Accuracy is: 40.00\nyes/no : 50.00 \n\n"
        "Epoch: 2, Loss: 1.5, Lr: 0.001\nElapsed time: 3, Speed(s/batch): 0.1\n\n"
        "Overall Accuracy is: 55.50\nyes/no : 60.00 \n\n")
    history = read_history(str(log))
    drawn = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append((kwargs.get("label"), [list(a) for a in args if not isinstance(a, str)]))
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    out = tmp_path / "curves.png"
    plots.training_curves(history, str(out), title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    series = dict(drawn)
    assert series["train loss"] == [[1, 2], [2.5, 1.5]]
    assert series["val accuracy"] == [[1, 2], [40.0, 55.5]]
    assert not list(tmp_path.glob("*.tmp*"))


def test_routing_plot_draws_each_span_per_layer(tmp_path, monkeypatch):
    drawn = []
    real_bar = matplotlib.axes.Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn.append((kwargs.get("label"), [float(h) for h in height]))
        return real_bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", spy)
    out = tmp_path / "routing.png"
    plots.routing_weights([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], [0, 1, 2], str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"
    # one bar series per span, its heights that span's weight in each decoder layer (the input's columns)
    assert drawn == [("global", [0.2, 0.9]), ("3x3 window", [0.5, 0.05]), ("5x5 window", [0.3, 0.05])]


def _drawn_figures(monkeypatch):
    """The figures plots saves, kept open for the test to look at."""
    figures = []
    real_save = plots._save

    def keep(fig, plt, path):
        figures.append(fig)
        fig.canvas.draw()
        real_save(fig, plt, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_curves_put_epochs_on_integer_ticks(tmp_path, monkeypatch):
    figures = _drawn_figures(monkeypatch)
    history = [{"epoch": e, "loss": 3.0 - e / 2} for e in (1, 2, 3)]
    plots.training_curves(history, str(tmp_path / "curves.png"), title="trar / demo (torch)")
    ticks = figures[0].axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)       # matplotlib's default: 1.0, 1.25, ...
    assert figures[0].axes[0].get_title() == "trar / demo (torch)"


def test_routing_plot_carries_its_title(tmp_path, monkeypatch):
    figures = _drawn_figures(monkeypatch)
    plots.routing_weights([[0.2, 0.8]], [0, 1], str(tmp_path / "routing.png"), title="epoch 3 (paddle)")
    assert figures[0].axes[0].get_title() == "epoch 3 (paddle)"
