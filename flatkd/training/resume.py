"""What ``--resume`` may continue: a checkpoint of the same run, with every setting that
changes what is computed unchanged."""
from __future__ import annotations

from .. import config as cfgmod
from ..config import to_plain
from ..errors import FlatkdError
from .config import TrainConfig

#: settings --resume may change: they do not alter what is computed (data_root: the data moved)
RESUME_MAY_CHANGE = ("epochs", "device", "num_workers", "data_root", "download",
                     "log.tensorboard", "log.wandb")


def epochs_fixed_by(saved: dict) -> str | None:
    """Why a run trained with config ``saved`` (plain dict) cannot continue to another epoch
    count — its lr schedule depends on the count — or None when it can."""
    schedule = (saved.get("optim") or {}).get("schedule", "constant")
    if schedule != "constant":
        return f"the {schedule} lr schedule (it depends on the epoch count)"
    return None


#: the loop state a resumable checkpoint holds (``state``), written by every flatkd train run
RESUME_STATE_KEYS = ("method", "replay_steps", "optimizer_steps")


def check_resumable(cfg: TrainConfig, raw: dict, stages: int) -> None:
    """Raise FlatkdError, naming the key, unless checkpoint ``raw`` can be resumed under
    ``cfg`` (a run of ``stages`` training stages): not an archive, no changed setting outside
    :data:`RESUME_MAY_CHANGE`, and a changed epoch count only where the schedule allows it."""
    saved = raw["config"]
    if not saved.get("save_optimizer", True) or saved.get("checkpoint_networks", "all") != "all":
        raise FlatkdError("--resume: this checkpoint was saved as an archive (without optimizer "
                          "state or without every network); it cannot be resumed")
    st = raw.get("state")
    lacking = [k for k in RESUME_STATE_KEYS if not isinstance(st, dict) or k not in st]
    if lacking:
        raise FlatkdError("--resume: this checkpoint holds no training-loop state (state."
                          f"{', state.'.join(lacking)} missing: it was not written by flatkd "
                          "train or was edited); it can be evaluated but not resumed")
    now, was = cfgmod.flatten(to_plain(cfg)), cfgmod.flatten(saved)
    for key in sorted(set(now) | set(was)):
        if key not in RESUME_MAY_CHANGE and now.get(key) != was.get(key):
            raise FlatkdError(f"--resume: the checkpoint was trained with {key}={was.get(key)!r} "
                              f"but this run asks for {now.get(key)!r}; only "
                              f"{', '.join(RESUME_MAY_CHANGE)} may change on resume")
    if cfg.epochs != saved["epochs"]:
        if stages > 1:
            raise FlatkdError(f"--resume: epochs cannot change for {cfg.method} (its "
                              f"{stages} stages split the {saved['epochs']} epochs)")
        fixed = epochs_fixed_by(saved)
        if fixed:
            raise FlatkdError(f"--resume: epochs cannot change under {fixed}")
        if cfg.epochs < raw["epoch"]:
            raise FlatkdError(f"--resume: the checkpoint has already trained {raw['epoch']} "
                              f"epochs; --epochs {cfg.epochs} is fewer")
