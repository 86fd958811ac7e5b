"""GPU speed options written to the same interfaces and tested on CPU: AMP, channels_last,
torch.compile, persistent DataLoader workers."""
import pytest
import torch

from flatkd.errors import FlatkdError
from flatkd.training import Trainer, resolve
from flatkd.training.batches import BatchSpec, Materializer, materialize

SMALL = {"train_subset": 32, "test_subset": 16, "batch_size": 16, "epochs": 1}


def trainer(tmp_path, method="online", name="run", **over):
    cfg = resolve(method, "resnet8", "digits", overrides={**SMALL, **over})
    return Trainer(cfg, tmp_path / name, progress=False)


def weights(t):
    return {f"{n}.{k}": v.clone() for n, m in t.method.nets.modules.items()
            for k, v in m.state_dict().items()}


def test_bf16_autocast_runs_the_networks_in_bf16_and_keeps_weights_fp32(tmp_path):
    t = trainer(tmp_path, amp="bf16")
    dtypes = []
    t.method.nets.modules["student"].fc.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    t.run()
    assert torch.bfloat16 in dtypes and not t.scaler.is_enabled()
    assert all(v.dtype == torch.float32 for k, v in weights(t).items() if v.is_floating_point())
    row = t.metrics[-1]
    assert row["train_loss"] == row["train_loss"] and 0 <= row["student_test_acc"] <= 1   # finite
    assert t.cfg.amp == "bf16" and t._derived()["device"] == "cpu"


def test_amp_off_is_the_default_and_unknown_modes_are_refused(tmp_path):
    assert resolve("online", "resnet8", "digits").amp == "off"
    with pytest.raises(FlatkdError, match="valid choices: off, bf16, fp16"):
        resolve("online", "resnet8", "digits", overrides={"amp": "tf32"})


def test_eager_compile_is_bit_equal_and_channels_last_computes_the_same_losses(tmp_path):
    plain = trainer(tmp_path, name="plain")
    plain.run()
    compiled = trainer(tmp_path, name="compiled", compile="eager")
    compiled.run()
    a, b = weights(plain), weights(compiled)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    losses = {}
    for name, over in (("plain1", {}), ("cl", {"channels_last": True})):
        t = trainer(tmp_path, name=name, **over)
        seen = []
        t.on_update = lambda t, u, x, y: seen.append(x.is_contiguous(memory_format=torch.channels_last))
        t.run()
        losses[name] = (t.metrics[-1]["train_loss"], seen)
    conv = t.method.nets.modules["student"].stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and all(losses["cl"][1])
    assert not any(losses["plain1"][1])
    assert losses["cl"][0] == pytest.approx(losses["plain1"][0], rel=1e-4)


def test_persistent_workers_serve_every_call_with_the_same_pixels(tmp_path):
    t = trainer(tmp_path)
    specs = [BatchSpec(1, 1, (0, 1, 2, 3), 1 << 20), BatchSpec(2, 1, (4, 5), 2 << 20)]
    stream = Materializer(t.train_set, t.augment, num_workers=1)
    first = [(x.clone(), y.clone()) for _, x, y in stream(specs)]
    workers = stream.loader._iterator
    second = [(x.clone(), y.clone()) for _, x, y in stream(specs[::-1])]
    assert stream.loader._iterator is workers and workers is not None     # same worker processes
    reference = [(x, y) for _, x, y in materialize(t.train_set, t.augment, specs)]
    for (x, y), (rx, ry) in zip(first + second[::-1], reference + reference):
        assert torch.equal(x, rx) and torch.equal(y, ry)
