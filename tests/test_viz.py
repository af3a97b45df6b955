"""qkv.viz: maps + labels, heatmaps, alignment, raw matrices, the HTML explorer, positions, and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.cli import main
from qkv.viz.alignment import alignment_figure, alignment_matrix
from qkv.viz.export import export_attention
from qkv.viz.heatmap import layer_figure
from qkv.viz.html import explorer_html
from qkv.viz.maps import collect_kinds, json_for_script, load_matrices, patch_labels, transformer_kinds
from qkv.viz.positions import position_similarity, positions_figure

SRC = ["▁ein", "▁Hund", "▁läuft", "</s>"]
TGT = ["<s>", "▁a", "▁dog", "▁runs", "."]


@pytest.fixture(scope="module")
def forward():
    """A tiny Transformer's real attention maps for one sentence pair (S=4, T=5; 2 layers, 4 heads)."""
    torch.manual_seed(0)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)
    model = Transformer(cfg).eval()
    src = torch.tensor([[5, 6, 7, 2]])
    tgt = torch.tensor([[1, 8, 9, 10, 11]])
    with torch.no_grad():
        _, maps = model(src, tgt, return_attention=True)
    return maps


def embedded_json(page: str) -> dict:
    raw = re.search(r'<script id="qkv-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_collect_kinds_stacks_layers_and_checks_labels(forward):
    kinds = transformer_kinds(forward, SRC, TGT)
    assert [k.name for k in kinds] == ["encoder_self", "decoder_self", "cross"]
    enc, dec, cross = kinds
    assert (
        enc.weights.shape == (2, 4, 4, 4)
        and dec.weights.shape == (2, 4, 5, 5)
        and cross.weights.shape == (2, 4, 5, 4)
    )
    assert (cross.query_tokens, cross.key_tokens) == (TGT, SRC)
    for k in kinds:
        for layer in range(2):
            assert np.array_equal(k.weights[layer], getattr(forward, k.name)[layer][0].numpy())
        np.testing.assert_allclose(k.weights.sum(-1), 1.0, atol=1e-5)  # softmax rows
    assert np.all(np.triu(dec.weights, k=1) == 0)  # causal: nothing above the diagonal
    with pytest.raises(ValueError, match=r"does not match the labels.*5 query tokens, 3 key tokens"):
        collect_kinds({"cross": forward.cross}, {"cross": (TGT, SRC[:3])})
    with pytest.raises(ValueError, match="no token labels"):
        collect_kinds({"cross": forward.cross}, {})


def test_export_writes_figures_matrices_and_html_from_the_real_tensors(forward, tmp_path):
    kinds = transformer_kinds(forward, SRC, TGT)
    written = export_attention(kinds, tmp_path, title="ein Hund </script>", formats=("svg",))  # PNG: CLI test
    names = {p.name for p in written}
    for kind in ("encoder_self", "decoder_self", "cross"):
        for layer in (1, 2):
            assert f"{kind}_layer{layer}.svg" in names
    assert {"alignment_layer2.svg", "attention.npz", "attention.html"} <= names
    svg = (tmp_path / "encoder_self_layer2.svg").read_text()
    assert "<svg" in svg and "Hund" in svg and "head 4" in svg  # tokens and head labels are on the picture

    # the raw matrices are exactly the returned tensors
    loaded = {k.name: k for k in load_matrices(tmp_path / "attention.npz")}
    for name in ("encoder_self", "decoder_self", "cross"):
        for layer in range(2):
            assert np.array_equal(loaded[name].weights[layer], getattr(forward, name)[layer][0].numpy())
    assert loaded["cross"].query_tokens == TGT and loaded["cross"].key_tokens == SRC

    # the HTML is self-contained and its inline data are the same tensors (rounded to 4 decimals)
    page = (tmp_path / "attention.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing loaded from elsewhere
    assert "</script>" not in page.split("<title>")[1].split("</title>")[0]  # the title was escaped
    data = embedded_json(page)
    by_name = {k["name"]: k for k in data["kinds"]}
    got = np.array(by_name["cross"]["weights"])
    np.testing.assert_allclose(got, np.stack([m[0].numpy() for m in forward.cross]), atol=5.1e-5)
    assert by_name["decoder_self"]["query_tokens"] == TGT


def test_alignment_is_the_head_average_of_cross_attention(forward):
    cross = transformer_kinds(forward, SRC, TGT)[2]
    for layer in (0, 1, -1):
        expected = forward.cross[layer][0].mean(0).numpy()  # (T, S)
        np.testing.assert_allclose(alignment_matrix(cross, layer), expected, atol=1e-6)
    np.testing.assert_allclose(alignment_matrix(cross).sum(-1), 1.0, atol=1e-5)
    fig = alignment_figure(cross, 0)
    # the lines panel draws one line per pair with weight >= 0.01, with alpha = weight
    lines = fig.axes[1].lines
    weights = sorted(w for w in alignment_matrix(cross, 0).ravel() if w >= 0.01)
    assert sorted(line.get_alpha() for line in lines) == pytest.approx(weights, abs=1e-6)
    with pytest.raises(ValueError, match="cross-attention"):
        alignment_matrix(transformer_kinds(forward, SRC, TGT)[0])
    with pytest.raises(ValueError, match="out of range"):
        alignment_matrix(cross, 5)


def test_heatmap_grid_has_one_panel_per_head_and_a_colour_bar(forward):
    kind = transformer_kinds(forward, SRC, TGT)[0]
    fig = layer_figure(kind, 1)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in panels] == ["head 1", "head 2", "head 3", "head 4"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == SRC
    image = panels[2].images[0].get_array()
    assert np.array_equal(np.asarray(image), kind.weights[1, 2])  # the picture shows the real weights
    assert any(ax.get_ylabel() == "attention weight" for ax in fig.axes)  # the colour bar


def test_encoder_only_models_fit_classifier_and_vit_labels(tmp_path):
    from qkv.models.classifier import ClassifierConfig, TextClassifier

    model = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=40, n_layers=2)).eval()
    with torch.no_grad():
        _, maps = model(torch.tensor([[5, 6, 7]]), return_attention=True)
    words = ["[CLS]", "a", "fine", "film"]
    kinds = collect_kinds({"encoder_self": maps}, {"encoder_self": (words, words)})
    written = {p.name for p in export_attention(kinds, tmp_path / "clf", formats=("png",))}
    assert written == {
        "encoder_self_layer1.png",
        "encoder_self_layer2.png",
        "attention.npz",
        "attention.html",
    }

    labels = patch_labels(4)  # ViT: patches as tokens
    assert labels == ["cls", "p0", "p1", "p2", "p3"]
    vit_maps = [torch.softmax(torch.randn(2, 3, 5, 5), -1)]
    kinds = collect_kinds({"encoder_self": vit_maps}, {"encoder_self": (labels, labels)}, index=1)
    assert np.array_equal(kinds[0].weights[0], vit_maps[0][1].numpy())
    assert embedded_json(explorer_html(kinds))["kinds"][0]["key_tokens"] == labels


def test_json_for_script_cannot_close_the_script_element():
    text = json_for_script({"tokens": ["</script><script>alert(1)</script>", "<!--", "a&b"]})
    assert "<" not in text and ">" not in text
    assert json.loads(text)["tokens"][0] == "</script><script>alert(1)</script>"


def test_positional_similarity_depends_only_on_the_offset():
    from qkv.nn.positional import sinusoidal_table

    table = sinusoidal_table(40, 32)
    sim = position_similarity(table)  # (T, T)
    assert torch.allclose(sim.diagonal(), torch.full((40,), 16.0), atol=1e-4)  # |PE(p)|² = D/2
    for offset in (1, 5, 17):
        diag = sim.diagonal(offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-3)  # Toeplitz: a function of p − q
    assert sim[0, 1] > sim[0, 10]  # nearer positions are more alike
    fig = positions_figure(d_model=16, max_len=10)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown, sinusoidal_table(10, 16).numpy())  # the picture is the §3.5 matrix
    with pytest.raises(ValueError, match="even"):
        positions_figure(d_model=15)


def test_cli_positions(tmp_path, capsys):
    assert main(["positions", "--d-model", "16", "--max-len", "12", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "positions.png").stat().st_size > 0 and (tmp_path / "positions.svg").stat().st_size > 0
    assert main(["positions", "--d-model", "15", "--out", str(tmp_path)]) == 2
    assert "--d-model must be an even number" in capsys.readouterr().err


def test_cli_attention_saves_the_demo_models_real_maps(tmp_path, capsys):
    from qkv.viz.serve import demo_translator

    source, target = "may 4 two thousand one", "2001-05-04"
    out = tmp_path / "att"
    assert (
        main(
            [
                "attention",
                source,
                "--target",
                target,
                "--out",
                str(out),
                "--formats",
                "png",
                "--beam-size",
                "1",
                "--layer",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "untrained demo model" in printed and "wrote" in printed
    assert (out / "alignment_layer1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "cross_layer2.png").exists() and (out / "attention.html").exists()
    assert not (out / "cross_layer2.svg").exists()  # --formats png
    # the same seeded model, run again here, gives exactly the saved matrices
    view = demo_translator().attention(source, target, beam_size=1)
    loaded = {k.name: k for k in load_matrices(out / "attention.npz")}
    assert loaded["cross"].query_tokens == view.tgt_tokens and loaded["cross"].key_tokens == view.src_tokens
    for name in ("encoder_self", "decoder_self", "cross"):
        for layer, m in enumerate(getattr(view.maps, name)):
            np.testing.assert_allclose(loaded[name].weights[layer], m[0].numpy(), atol=1e-6)
    assert main(["attention", source, "--model", str(tmp_path / "missing")]) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err


def test_cli_attention_and_explain_load_a_checkpoint(tmp_path, capsys):
    from qkv.train import checkpoint
    from qkv.viz.serve import demo_translator

    demo = demo_translator()
    folder = checkpoint.save_checkpoint(tmp_path / "ckpt", demo.model, tokenizers=demo.tokenizers)
    source = "may 4 two thousand one"
    out = tmp_path / "att"
    assert main(["attention", source, "--model", str(folder), "--out", str(out), "--formats", "svg"]) == 0
    loaded = {k.name: k for k in load_matrices(out / "attention.npz")}
    assert loaded["encoder_self"].query_tokens == [*demo.src_tokenizer.tokens(source), "</s>"]
    np.testing.assert_allclose(loaded["encoder_self"].weights.sum(-1), 1.0, atol=1e-5)
    assert main(["explain", source, "--model", str(folder)]) == 0
    assert "OK: the hand computation is the model" in capsys.readouterr().out
