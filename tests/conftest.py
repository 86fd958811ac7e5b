"""Shared pytest fixtures."""
import pytest

from fixtures_data import write_cifar10, write_cifar100, write_imagefolder, write_tinyimagenet


# ---------------------------------------------------------------- tiny datasets on disk
@pytest.fixture(scope="session")
def tiny_cifar100(tmp_path_factory):
    """(root, written) — a CIFAR-100 python-pickle tree; ``written[split] = (uint8 NCHW, labels)``."""
    root = tmp_path_factory.mktemp("cifar100")
    return root, write_cifar100(root)


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    return root, write_cifar10(root)


@pytest.fixture(scope="session")
def tiny_tinyimagenet(tmp_path_factory):
    """(root, info) — ``root/tiny-imagenet-200`` with 3 classes; see ``write_tinyimagenet``."""
    root = tmp_path_factory.mktemp("tin")
    return root, write_tinyimagenet(root)


@pytest.fixture(scope="session")
def tiny_imagefolder(tmp_path_factory):
    """(root, info) — ``root/{train,val}/{cat,dog}/*.png``, 40×30 images."""
    root = tmp_path_factory.mktemp("imagefolder")
    return root, write_imagefolder(root)


# ---------------------------------------------------------------- a small trained checkpoint
@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    """Path of a spaced-online ResNet-8 checkpoint trained 1 epoch on 96 digits images."""
    from flatkd.training import Trainer, resolve

    cfg = resolve("spaced-online", "resnet8", "digits", epochs=1, interval=0.5,
                  overrides={"train_subset": 96, "test_subset": 64, "batch_size": 16})
    return Trainer(cfg, tmp_path_factory.mktemp("digits-ckpt") / "run", progress=False).run()
