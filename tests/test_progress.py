"""Progress that tells the truth: the training bar counts optimizer updates (replays included)
against a total known up front, shows only losses that were computed, and the Hessian bar never
counts past its total."""
import re

import pytest
import torch
from tqdm.auto import tqdm

import flatkd.training.loop as loop
from flatkd.training import Trainer, resolve

SMALL = {"train_subset": 96, "test_subset": 64, "batch_size": 16, "epochs": 3,
         "log.tensorboard": False}                                  # 6 steps/epoch


class RecordingBar(tqdm):
    """tqdm that records every instance, the largest count it reached and the postfix shown
    after every tick."""

    made: list["RecordingBar"] = []

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.peak, self.postfixes, self.passed = 0, [], False
        RecordingBar.made.append(self)

    def update(self, n=1):
        out = super().update(n)
        self.peak = max(self.peak, self.n)
        self.passed |= self.total is not None and self.n > self.total
        self.postfixes.append(self.postfix or "")       # what the bar shows after this tick
        return out


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(loop, "tqdm", RecordingBar)
    return RecordingBar.made


def trainer(tmp_path, method, name="run", progress=True, interval=None, **over):
    cfg = resolve(method, "resnet8", "digits", interval=interval, overrides={**SMALL, **over})
    return Trainer(cfg, tmp_path / name, progress=progress)


def weights(t):
    return {f"{n}.{k}": v.detach().clone() for n, m in t.method.nets.modules.items()
            for k, v in m.state_dict().items()}


def test_spaced_online_epoch_bars_count_every_update_and_end_at_their_totals(tmp_path, bars):
    # s = 0.75 epoch = 4 steps: replays after steps 4, 8 (crosses into epoch 2), 12, 16, and the
    # leftover 17–18 distilled at the end → epochs of 6+4, 6+8, 6+6 updates
    t = trainer(tmp_path, "spaced-online", interval=0.75, **{"spaced.leftover": "distil"})
    t.run()
    assert [b.total for b in bars] == [10, 14, 12]
    assert all(b.n == b.total == b.peak and not b.passed for b in bars)
    assert sum(b.total for b in bars) == sum(t.opt_steps.values()) == 36
    assert all(b.unit == "update" for b in bars)


@pytest.mark.parametrize("method,interval,over", [
    ("spaced-self", 0.5, {}),
    ("constant-ahead", 0.5, {"spaced.leftover": "distil"}),
    ("spaced-dlb", 0.75, {"epochs": 2}),
])
def test_other_schedules_are_counted_exactly_and_training_is_unchanged(tmp_path, bars, method,
                                                                       interval, over):
    shown = trainer(tmp_path, method, "shown", interval=interval, **over)
    planned = shown.planned_updates()
    state = shown.method.state_dict()
    shown.run()
    assert all(b.n == b.total and not b.passed for b in bars)
    assert planned == sum(b.total for b in bars) == sum(shown.opt_steps.values())
    quiet = trainer(tmp_path, method, "quiet", progress=False, interval=interval, **over)
    assert quiet.method.state_dict() == state            # counting changed nothing up front
    quiet.run()
    a, b = weights(shown), weights(quiet)                 # …nor what was trained
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert shown.method.replay_steps == quiet.method.replay_steps


def test_count_updates_leaves_the_method_untouched(tmp_path):
    t = trainer(tmp_path, "spaced-online", progress=False, interval=0.75)
    specs = t._epoch_specs(1)
    t.method.schedule(specs[0])                          # one spec already buffered
    before = (list(t.method.buffer), list(t.method.replay_steps))
    assert t.method.count_updates(specs[1:], final=False) == 5 + 4    # 5 advances, 1 replay of 4
    assert (t.method.buffer, t.method.replay_steps) == before


def _shown_losses(postfix: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=(-?[\d.]+)", postfix)}


def test_shown_loss_is_each_roles_computed_loss_never_a_placeholder(tmp_path, bars):
    # s = 1 epoch: all of epoch 1 is teacher steps until the replay after step 6
    t = trainer(tmp_path, "spaced-online", interval=1.0, epochs=2)
    t.run()
    shown = [v for b in bars for p in b.postfixes for v in _shown_losses(p).values()]
    assert shown and all(v > 0 for v in shown)          # never the 0.000 of an empty mean
    first = bars[0].postfixes
    assert len(first) == bars[0].total == 12
    assert all(set(_shown_losses(p)) == {"teacher"} for p in first[:6])   # no student loss yet
    assert set(_shown_losses(first[6])) == {"teacher", "replay"}
    final = _shown_losses(bars[0].postfixes[-1])        # = the epoch's means in metrics.csv
    row = t.metrics[0]
    assert final["replay"] == pytest.approx(row["train_loss"], abs=5e-4)
    assert final["teacher"] == pytest.approx(row["teacher_train_loss"], abs=5e-4)


# ---------------------------------------------------------------- Hessian products
def test_hessian_bar_never_counts_past_its_total(monkeypatch):
    """The shared Lanczos run goes on until the top k converge (here well past the slq_steps the
    plan assumed); with the exact Gauss–Newton trace (the default on ReLU nets) nothing else
    follows, so the old plan-sized total was passed (18/12 here; 40/40 and on with the default
    slq_steps = 40)."""
    import flatkd.flatness.backends as backends
    from flatkd.flatness.config import HessianConfig
    from flatkd.flatness.data import first_samples

    from flatness_nets import N, conv_bn, dataset

    made = []

    class Bar(RecordingBar):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(backends, "tqdm", Bar)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = HessianConfig(samples=N, top_k=5, slq_steps=12, slq_probes=1, max_iter=100)
        res = backends.native(conv_bn(), first_samples(dataset(), N, N, torch.device("cpu")),
                              cfg, seed=0, progress=True)
    finally:
        torch.set_num_threads(before)
    assert res["trace_estimator"] == "gauss-newton"
    assert res["lanczos_steps"] > cfg.slq_steps          # the run outlasted the plan
    (bar,) = [b for b in made if b.desc == "hessian-vector products"]
    assert not bar.passed and bar.n == bar.total == res["n_hvp_total"]
