"""Like with like: every spaced method the report pairs with a counterpart equals it at s = 0
(every network's weights and every metrics row, bit for bit), and at s > 0 its student takes
the counterpart's optimizer steps — except spaced self-KD (paper Alg. 4: two steps per batch),
whose report verdicts say so."""
import pytest
import torch

from flatkd import load_checkpoint
from flatkd.evidence.results import COUNTERPART
from flatkd.training import Trainer, resolve

TINY = {"train_subset": 32, "test_subset": 16, "batch_size": 8, "epochs": 2}    # 4 steps/epoch
PAIRS = sorted(COUNTERPART.items()) + [("constant-ahead", "online")]
#: spaced methods whose paper algorithm gives the student more steps than its counterpart's
MORE_STEPS = {"spaced-self": 2, "spaced-self+lskd": 2, "spaced-self+ctkd": 2}


def _run(tmp_path, method, name, interval=None):
    cfg = resolve(method, "resnet8", "digits", interval=interval, overrides=TINY)
    t = Trainer(cfg, tmp_path / name, progress=False)
    return t, load_checkpoint(t.run())


def _states(t):
    return {f"{n}.{k}": v for n, m in t.method.nets.modules.items()
            for k, v in m.state_dict().items()}


def test_every_counterpart_is_a_registered_method():
    from flatkd.training import METHODS
    assert all(a in METHODS and b in METHODS for a, b in PAIRS)
    assert COUNTERPART["spaced-ban"] == "online-ban" and COUNTERPART["spaced-takd"] == "online-takd"


@pytest.mark.parametrize("spaced,plain", PAIRS)
def test_spaced_at_zero_is_its_counterpart_and_budgets_match(tmp_path, spaced, plain):
    a, ca = _run(tmp_path, plain, "plain")
    b, cb = _run(tmp_path, spaced, "zero", interval=0.0)
    sa, sb = _states(a), _states(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert ca.raw["metrics"] == cb.raw["metrics"]
    _, cs = _run(tmp_path, spaced, "spaced", interval=0.5)         # 2-step intervals
    steps = [ck.raw["metrics"][-1]["student_steps"] for ck in (ca, cs)]
    assert steps[1] == MORE_STEPS.get(spaced, 1) * steps[0], steps
