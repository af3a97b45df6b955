"""ViT: patch embedding, shapes, learning 8×8 digits, idx parsing, attention rollout, the CLI."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from qkv.cli import main
from qkv.config import ConfigError
from qkv.data.mnist import IdxError, load_mnist_t10k, random_shift, read_idx
from qkv.models import registry
from qkv.models.vit import PatchEmbedding, ViT, ViTConfig
from qkv.tasks.image_classification import train_image_classifier
from qkv.train.checkpoint import load_checkpoint, save_checkpoint
from qkv.train.fit import ClassifyTrainConfig
from qkv.viz.rollout import attention_rollout, cls_patch_map


def test_shapes_and_attention():
    model = ViT(ViTConfig.preset("digits", n_layers=3)).eval()
    logits, maps = model(torch.rand(2, 1, 8, 8), return_attention=True)
    assert logits.shape == (2, 10)
    assert len(maps) == 3 and maps[0].shape == (2, 4, 17, 17)  # [CLS] + 4×4 patches
    assert model(torch.rand(2, 8, 8)).shape == (2, 10)  # one channel may be left out
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 8, 8\)"):
        model(torch.rand(2, 1, 9, 9))


def test_config_validates_and_checkpoint_roundtrip(tmp_path):
    with pytest.raises(ConfigError, match="must divide"):
        ViTConfig(image_size=8, patch_size=3)
    with pytest.raises(ConfigError, match="norm must be one of"):
        ViTConfig(norm="middle")
    with pytest.raises(ConfigError, match="unknown ViT preset"):
        ViTConfig.preset("huge")
    model = ViT(ViTConfig.preset("digits", n_layers=1))
    with torch.no_grad():
        model.head.weight.normal_()  # the head starts at zero: make the logits depend on the input
    assert registry.model_arch(model) == "vit"
    save_checkpoint(tmp_path / "v", model, metrics={"test_acc": 0.5})
    loaded = load_checkpoint(tmp_path / "v")
    images = torch.rand(3, 1, 8, 8)
    assert isinstance(loaded.model, ViT) and loaded.model.config == model.config
    assert torch.equal(loaded.model(images), model.eval()(images)) and loaded.metrics == {"test_acc": 0.5}


def test_patch_embedding_is_linear_map_of_flattened_patches():
    embed = PatchEmbedding(in_channels=2, d_model=5, patch_size=3)
    images = torch.randn(1, 2, 6, 6)
    out = embed(images)  # (1, 4, 5)
    patches = images.unfold(2, 3, 3).unfold(3, 3, 3)  # (1, 2, 2, 2, 3, 3): C, gy, gx, py, px
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(1, 4, 2 * 3 * 3)  # row-major patches, flattened
    linear = patches @ embed.proj.weight.reshape(5, -1).T + embed.proj.bias
    assert torch.allclose(out, linear, atol=1e-5)


def test_vit_learns_8x8_digits():
    pytest.importorskip("sklearn")
    from qkv.data.mnist import load_digits_8x8

    d = load_digits_8x8()
    model = ViT(ViTConfig.preset("digits", n_layers=1))
    history = train_image_classifier(
        model,
        d.train_x,
        d.train_y.tolist(),
        ClassifyTrainConfig(epochs=6, batch_size=32, lr=5e-3),
        dev=(d.test_x, d.test_y.tolist()),
    )
    assert history[-1]["dev_acc"] > 0.8


def _write_idx(path, array, magic=None):
    header = bytes([0, 0, 8, array.ndim]) if magic is None else magic
    dims = np.array(array.shape, dtype=">u4").tobytes()
    data = header + dims + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_read_idx_and_errors(tmp_path):
    images = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 256
    _write_idx(tmp_path / "x.gz", images)
    _write_idx(tmp_path / "y", np.array([1, 2, 3]))
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)
    assert read_idx(tmp_path / "y").tolist() == [1, 2, 3]
    _write_idx(tmp_path / "bad", images, magic=bytes([0, 0, 0x0D, 3]))
    with pytest.raises(IdxError, match="bad magic number"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes((tmp_path / "y").read_bytes()[:-1])
    with pytest.raises(IdxError, match=r"wrong size: header says shape \(3,\) = 3 bytes of data, file has 2"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_load_mnist_split(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10) % 10)
    s = load_mnist_t10k(tmp_path, n_train=8)
    assert s.train_x.shape == (8, 1, 28, 28) and s.test_x.shape == (2, 1, 28, 28)
    assert s.test_y.tolist() == [8, 9] and s.train_x.min() >= 0.0 and s.train_x.max() <= 1.0
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(9) % 10)
    with pytest.raises(IdxError, match=r"10 images but .* 9 labels"):
        load_mnist_t10k(tmp_path)


def test_random_shift_moves_pixels():
    x = torch.zeros(50, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(y.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing falls off
    rows, cols = y[:, 0].nonzero()[:, 1], y[:, 0].nonzero()[:, 2]
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5  # the shifts differ between images


def test_rollout_rows_sum_to_one():
    maps = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(4)]
    r = attention_rollout(maps)
    assert r.shape == (2, 5, 5)
    assert torch.allclose(r.sum(-1), torch.ones(2, 5), atol=1e-6)
    assert (r >= 0).all()


def test_rollout_matches_hand_computation_for_two_layers():
    a1 = torch.tensor([[[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.4, 0.6]]]])  # (1, 2 heads, 2, 2)
    a2 = torch.tensor([[[[0.9, 0.1], [0.3, 0.7]], [[0.7, 0.3], [0.1, 0.9]]]])
    # layer 1: mean of heads = [[.75, .25], [.3, .7]]; + I = [[1.75, .25], [.3, 1.7]]; rows / 2
    m1 = torch.tensor([[0.875, 0.125], [0.15, 0.85]])
    # layer 2: mean = [[.8, .2], [.2, .8]]; + I, rows / 2 = [[.9, .1], [.1, .9]]
    m2 = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    expected = torch.tensor(
        [
            [0.9 * 0.875 + 0.1 * 0.15, 0.9 * 0.125 + 0.1 * 0.85],
            [0.1 * 0.875 + 0.9 * 0.15, 0.1 * 0.125 + 0.9 * 0.85],
        ]
    )
    assert torch.allclose(expected, m2 @ m1)
    assert torch.allclose(attention_rollout([a1, a2])[0], expected, atol=1e-6)
    no_res = attention_rollout([a1, a2], add_residual=False)[0]
    assert torch.allclose(no_res, a2.mean(1)[0] @ a1.mean(1)[0], atol=1e-6)


def test_cls_patch_map():
    r = attention_rollout([torch.softmax(torch.randn(1, 2, 17, 17), -1)])
    heat = cls_patch_map(r, 4)
    assert heat.shape == (1, 4, 4) and torch.allclose(heat.flatten(), r[0, 0, 1:])
    with pytest.raises(ValueError, match="does not match"):
        cls_patch_map(r, 3)


def test_cli_train_and_attention(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "vit"
    assert main(["vit", "train", "--out", str(out), "--epochs", "1", "--preset", "digits"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    png = tmp_path / "r.png"
    assert main(["vit", "attention", "--model", str(out), "--index", "3", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["vit", "attention", "--model", str(out), "--index", "100000"]) == 2
    assert "--index must be in" in capsys.readouterr().err


def test_real_mnist_t10k_split(shared_data):
    s = load_mnist_t10k(shared_data / "mnist")
    assert s.train_x.shape == (8000, 1, 28, 28) and s.test_x.shape == (2000, 1, 28, 28)
    assert set(s.test_y.tolist()) == set(range(10))
