"""torch.compile captures qkv.Transformer's whole training step in one graph and computes the same thing.

Fast checks use the ``aot_eager`` backend (Dynamo capture + AOTAutograd's joint forward/backward graph, run
by eager kernels: no C++ compilation); one test runs the real Inductor backend on a tiny model.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

import qkv

pytestmark = pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(), reason=f"torch.compile is unsupported here ({torch.__version__})"
)
V = 32


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def tiny_model(dropout: float = 0.0) -> qkv.Transformer:
    torch.manual_seed(0)
    config = qkv.TransformerConfig.preset(
        "tiny", src_vocab_size=V, tgt_vocab_size=V, n_layers=1, dropout=dropout, max_len=64
    )
    return qkv.Transformer(config)


def batch(b: int = 3, s: int = 9, t: int = 7, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (b, s), generator=gen)
    src[0, s - 3 :] = 0  # padding: the key-padding mask path is traced too
    tgt_in = torch.randint(4, V, (b, t), generator=gen)
    tgt_out = torch.randint(4, V, (b, t), generator=gen)
    return src, tgt_in, tgt_out


def training_loss(model, src, tgt_in, tgt_out):
    logits = model(src, tgt_in)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0, label_smoothing=0.1)


def test_training_forward_has_no_graph_break():
    model = tiny_model(dropout=0.1).train()
    explanation = torch._dynamo.explain(lambda *b: training_loss(model, *b))(*batch())
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_training_step_matches_eager():
    eager = tiny_model()
    compiled_model = tiny_model()
    step = torch.compile(lambda *b: training_loss(compiled_model, *b), backend="aot_eager", fullgraph=True)
    loss_eager = training_loss(eager, *batch())
    loss_compiled = step(*batch())
    loss_eager.backward()
    loss_compiled.backward()
    torch.testing.assert_close(loss_compiled, loss_eager, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_new_batch_shapes_do_not_recompile_once_dynamic():
    """After the first shape change Dynamo marks sizes dynamic; later batch/length changes reuse the graph."""
    model = tiny_model()
    step = torch.compile(lambda *b: training_loss(model, *b), backend="eager", fullgraph=True)
    step(*batch(3, 9, 7))
    step(*batch(4, 11, 8))  # recompiles once, with dynamic sizes
    with torch._dynamo.config.patch(error_on_recompile=True):
        step(*batch(5, 13, 10))
        step(*batch(2, 6, 12))


def test_incremental_decoding_step_has_no_graph_break():
    model = tiny_model().eval()
    src, tgt_in, _ = batch()
    with torch.no_grad():
        memory = model.encode(src)
        cache = model.new_cache()
        model.decode(tgt_in[:, :1], memory, model.src_mask(src), cache)  # fills the cross-attention K/V
        explanation = torch._dynamo.explain(model.decode)(tgt_in[:, 1:2], memory, model.src_mask(src), cache)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow  # C++ code generation and compilation: ~10-40 s on a small CPU
@pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("g++", "c++", "clang++", "cl")),
    reason="Inductor needs a C++ compiler on CPU and none was found",
)
def test_inductor_forward_matches_eager():
    model = tiny_model().eval()
    compiled = torch.compile(model, fullgraph=True)  # the default backend: Inductor
    src, tgt_in, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(compiled(src, tgt_in), model(src, tgt_in), rtol=1e-4, atol=1e-5)
