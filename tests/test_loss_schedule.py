"""Label-smoothed cross-entropy (§5.4) and the learning-rate schedules (§5.3, Eq. 3)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from qkv.train.config import TrainConfig
from qkv.train.loss import label_smoothed_cross_entropy, perplexity
from qkv.train.schedule import (
    ConstantSchedule,
    InverseSqrtSchedule,
    LinearDecaySchedule,
    NoamSchedule,
    build_scheduler,
)


def reference_loss(logits, target, eps, pad):
    """Hand-written: Σ over non-pad tokens of (1-ε)·(−log p_y) + ε·mean_v(−log p_v)."""
    total = nll_total = 0.0
    for b in range(target.shape[0]):
        for t in range(target.shape[1]):
            y = int(target[b, t])
            if y == pad:
                continue
            logp = [float(v) for v in torch.log_softmax(logits[b, t].double(), dim=-1)]
            nll = -logp[y]
            smooth = -sum(logp) / len(logp)
            total += (1 - eps) * nll + eps * smooth
            nll_total += nll
    return total, nll_total


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_matches_hand_written_reference_and_torch(eps):
    logits = torch.randn(3, 6, 13)
    target = torch.randint(1, 13, (3, 6))
    target[0, 4:] = 0
    target[2, 1:] = 0
    loss, nll, n = label_smoothed_cross_entropy(logits, target, epsilon=eps, ignore_index=0)
    ref_loss, ref_nll = reference_loss(logits, target, eps, 0)
    assert int(n) == int((target != 0).sum())
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    assert nll.item() == pytest.approx(ref_nll, rel=1e-5)
    torch_loss = F.cross_entropy(
        logits.view(-1, 13), target.view(-1), label_smoothing=eps, ignore_index=0, reduction="sum"
    )
    assert loss.item() == pytest.approx(torch_loss.item(), rel=1e-5)


def test_padding_gets_no_gradient_and_smoothing_hurts_a_confident_model():
    logits = torch.randn(2, 4, 9, requires_grad=True)
    target = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 0]])
    loss, _, _ = label_smoothed_cross_entropy(logits, target)
    loss.backward()
    assert torch.all(logits.grad[0, 2:] == 0) and torch.all(logits.grad[1, 3] == 0)
    assert logits.grad[0, 0].abs().sum() > 0
    # a one-hot-confident model: NLL ~ 0, but the smoothed loss stays well above it
    confident = torch.full((1, 3, 9), -20.0)
    tgt = torch.tensor([[1, 2, 3]])
    confident[0, torch.arange(3), tgt[0]] = 20.0
    loss, nll, n = label_smoothed_cross_entropy(confident, tgt, epsilon=0.1)
    assert nll.item() / int(n) < 1e-6 and loss.item() / int(n) > 1.0


def test_bf16_logits_are_scored_in_float32_and_shape_errors_are_clear():
    logits = torch.randn(2, 3, 7)
    target = torch.randint(1, 7, (2, 3))
    loss32, _, _ = label_smoothed_cross_entropy(logits, target)
    loss16, _, _ = label_smoothed_cross_entropy(logits.bfloat16(), target)
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=2e-2)
    with pytest.raises(ValueError, match=r"logits \(2, 3, 7\), target \(2, 4\)"):
        label_smoothed_cross_entropy(logits, torch.ones(2, 4, dtype=torch.long))
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [1, 40, 1 << 18])  # one row, several rows with a ragged last chunk, all rows
def test_gradient_equals_torch_in_every_chunking(dtype, chunk, monkeypatch):
    """The loss computes its gradient in the forward pass, chunk by chunk: it must be autograd's gradient of
    F.cross_entropy (label smoothing, padding ignored), for any chunk size, and leave the logits untouched."""
    import qkv.train.loss as loss_module

    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(loss_module, "MAX_CHUNKS", 100)
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11).to(dtype).requires_grad_()
    before = logits.detach().clone()
    target = torch.randint(1, 11, (3, 7))
    target[1, 3:] = 0
    loss, nll, _ = label_smoothed_cross_entropy(logits, target, epsilon=0.1, ignore_index=0)
    (loss * 0.5).backward()  # the backward pass scales by the incoming gradient
    ours = logits.grad.float()
    assert torch.equal(logits.detach(), before)
    reference = logits.detach().float().requires_grad_()
    ref_loss = F.cross_entropy(
        reference.view(-1, 11), target.view(-1), label_smoothing=0.1, ignore_index=0, reduction="sum"
    )
    (ref_loss * 0.5).backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    assert torch.allclose(ours, reference.grad, atol=tol)
    assert logits.grad.dtype == dtype and not nll.requires_grad
    with pytest.raises(RuntimeError, match="one backward pass"):
        loss2, _, _ = label_smoothed_cross_entropy(logits, target)
        loss2.backward(retain_graph=True)
        loss2.backward()
    with torch.no_grad():  # evaluation: the same value, no gradient kept
        assert label_smoothed_cross_entropy(logits, target)[0].item() == pytest.approx(loss.item(), rel=1e-6)


def test_chunks_stay_in_cache_on_a_cpu_and_are_one_pass_on_a_gpu():
    """CPU: chunks of about CHUNK_ELEMENTS, never more than MAX_CHUNKS; a GPU: one chunk for a large batch
    (64 small chunks there were most of a step's extra time), yet bounded for a huge one."""
    from qkv.train.loss import CHUNK_ELEMENTS, DEVICE_CHUNK_ELEMENTS, MAX_CHUNKS, chunk_rows

    for n, v in [(1536, 8000), (8192, 10000), (100_000, 32000), (3, 7)]:
        rows = chunk_rows(n, v, "cpu")
        assert -(-n // rows) <= MAX_CHUNKS
        assert rows * v <= max(CHUNK_ELEMENTS, v, -(-n // MAX_CHUNKS) * v)
    assert chunk_rows(8192, 10000, "cuda") >= 8192  # the bench's 256 x 32 target tokens: one pass
    assert chunk_rows(1 << 20, 32000, "cuda") * 32000 <= DEVICE_CHUNK_ELEMENTS  # 1 M tokens: split, bounded
    assert chunk_rows(1, 1 << 28, "cuda") == 1  # a vocabulary over the limit: one row at a time


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("announced, applied", [(0.25, 0.25), (0.25, 0.5), (0.25, -1.0), (0.0, 0.0)])
def test_announced_grad_scale_changes_no_gradient(dtype, announced, applied):
    """``grad_scale`` stores the gradient pre-multiplied so that a matching backward skips a pass over (N, V);
    whatever factor the backward pass then brings (the announced one or another), the gradient is autograd's
    gradient of ``applied · F.cross_entropy(sum)``: neither missing nor applied twice."""
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 9).to(dtype).requires_grad_()
    target = torch.randint(1, 9, (2, 5))
    target[0, 3:] = 0
    loss, _, _ = label_smoothed_cross_entropy(logits, target, epsilon=0.1, grad_scale=torch.tensor(announced))
    (loss * applied).backward()
    reference = logits.detach().float().requires_grad_()
    ref_loss = F.cross_entropy(
        reference.view(-1, 9), target.view(-1), label_smoothing=0.1, ignore_index=0, reduction="sum"
    )
    (ref_loss * applied).backward()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(logits.grad.float(), reference.grad, atol=tol)
    assert torch.all(logits.grad[0, 3:] == 0)


def test_noam_is_eq3():
    s = NoamSchedule(d_model=512, warmup_steps=4000)
    for step in (1, 10, 3999, 4000, 4001, 100_000):
        expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert s(step) == pytest.approx(expected, rel=1e-12)
    assert max(range(1, 20000, 7), key=s) in range(3990, 4010)  # peak at warmup_steps
    assert NoamSchedule(512, 4000, scale=2.0)(100) == pytest.approx(2 * s(100))


def test_inverse_sqrt_and_constant():
    s = InverseSqrtSchedule(peak_lr=1e-3, warmup_steps=100)
    assert s(50) == pytest.approx(5e-4)
    assert s(100) == pytest.approx(1e-3)
    assert s(400) == pytest.approx(5e-4)  # 1e-3 * sqrt(100 / 400)
    assert ConstantSchedule(3e-4, warmup_steps=10)(5) == pytest.approx(1.5e-4)
    assert ConstantSchedule(3e-4)(1000) == 3e-4
    with pytest.raises(ValueError):
        NoamSchedule(d_model=0)


def test_linear_decay_reaches_zero_after_max_steps():
    s = LinearDecaySchedule(peak_lr=2e-3, warmup_steps=100, total_steps=500)
    assert s(50) == pytest.approx(1e-3)
    assert s(100) == pytest.approx(2e-3)
    assert s(301) == pytest.approx(1e-3)  # half way down
    assert s(500) == pytest.approx(2e-3 / 400)  # the last update still moves
    assert s(501) == 0.0 and s(700) == 0.0  # past the end: never negative
    steps = [s(k) for k in range(101, 502)]
    assert all(a > b for a, b in itertools.pairwise(steps))  # strictly decreasing after the warm-up
    assert LinearDecaySchedule(1e-3, 0, 10)(1) == pytest.approx(1e-3)  # no warm-up: starts at the top
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        LinearDecaySchedule(1e-3, warmup_steps=501, total_steps=500)


def test_linear_schedule_config_needs_max_steps():
    config = TrainConfig(lr_schedule="linear", lr=1e-3, warmup_steps=10, max_steps=110)
    assert config.schedule(d_model=256)(61) == pytest.approx(0.5e-3)
    with pytest.raises(ValueError, match="set max_steps"):
        TrainConfig(lr_schedule="linear", lr=1e-3, max_time_minutes=30)
    with pytest.raises(ValueError, match="warmup_steps <= max_steps"):
        TrainConfig(lr_schedule="linear", lr=1e-3, warmup_steps=200, max_steps=100)


def test_build_scheduler_sets_lr_of_each_update():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([param], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    schedule = NoamSchedule(d_model=64, warmup_steps=10)
    sched = build_scheduler(opt, schedule)
    seen = []
    for _ in range(15):
        seen.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule(k) for k in range(1, 16)])
    with pytest.raises(ValueError, match="base lr"):
        build_scheduler(torch.optim.Adam([param], lr=0.1), schedule)
