"""Captioning: scene generator, captions reader, decoding (beam 1 = greedy), losses, metrics, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnbench import tasks
from attnbench.config import ParamsError, resolve_run
from attnbench.validation import validate
from attnbench.errors import DataError
from attnbench.models.captioner import BOS, EOS, Captioner
from attnbench.tasks.captioning import Data, bleu_scores, localisation
from attnbench.tasks.captioning import data as reader   # the real-data reader
from attnbench.tasks.captioning import data as scenes   # the scene generator

from .conftest import ROOT, load_params, run, write_params

TASK = tasks.get("captioning")


# ---- scenes ---------------------------------------------------------------------------------------
def test_scenes_know_their_objects_masks_and_relations():
    made = scenes.generate(60, seed=3)
    assert {len(s.objects) for s in made} == {1, 2, 3}
    for s in made:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert len(s.captions) == scenes.REFERENCES
        union = np.zeros((64, 64), dtype=int)
        for o in s.objects:
            assert o.mask.any() and o.mask[o.cy, o.cx]
            union += o.mask
            colour = np.array(scenes.COLOURS[o.colour])
            # the pixels under the mask carry the object's colour (up to the noise)
            assert np.abs(s.image[o.mask].mean(0) - colour).max() < 12
            for cap in s.captions:
                assert f"{o.colour} {o.shape}" in cap
        assert union.max() == 1                       # objects never overlap
        if len(s.objects) == 2:
            a, b = sorted(s.objects, key=lambda o: (o.cx, o.cy))
            rel = scenes.relation(a, b)
            assert f"{a.colour} {a.shape} {rel} " in s.captions[2]
            if rel == "left of":
                assert a.cx < b.cx
            if rel == "above":
                assert a.cy < b.cy and abs(a.cy - b.cy) > abs(a.cx - b.cx)
    again = scenes.generate(60, seed=3)
    assert all((x.image == y.image).all() and x.captions == y.captions for x, y in zip(made, again))


def test_referent_uses_the_colour_before_the_shape():
    objs = [{"shape": "circle", "colour": "red"}, {"shape": "circle", "colour": "blue"}, {"shape": "square", "colour": "red"}]
    assert scenes.referent("a blue circle left of a red circle".split(), 2, objs) == 1
    assert scenes.referent("a blue circle left of a red circle".split(), 7, objs) == 0
    assert scenes.referent("a green square".split(), 2, objs) == 2          # wrong colour, the only square
    assert scenes.referent("a green circle".split(), 2, objs) is None       # two circles, neither green


# ---- the captions reader --------------------------------------------------------------------------
def _folder(tmp_path, captions, images=("a.png", "b.png")):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in images:
        Image.fromarray(np.full((20, 30, 3), 128, dtype=np.uint8)).save(folder / name)
    path = tmp_path / "captions.json"
    path.write_text(captions if isinstance(captions, str) else json.dumps(captions))
    return folder, path


def test_reader_reads_a_folder(tmp_path):
    folder, path = _folder(tmp_path, {"a.png": ["A dog runs.", "A brown dog"], "b.png": ["Two cats!"]})
    names, images, caps = reader.read_folder(folder, path, 32)
    assert names == ["a.png", "b.png"] and images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert caps[1] == ["Two cats!"] and reader.tokenize(caps[0][0]) == ["a", "dog", "runs"]


@pytest.mark.parametrize("captions, expected", [
    ({"a.png": ["a dog"], "missing.png": ["a cat"]}, ["'missing.png'", "does not exist"]),
    ({"a.png": ["a dog"], "b.png": []}, ["'b.png'", "empty list of captions"]),
    ({"a.png": ["a dog", "  ... "]}, ["'a.png'", "caption 2", "empty caption"]),
    ({"a.png": "a dog", "b.png": {"text": "x"}}, ["'b.png'", "expected a list of captions"]),
    ({"a.png": ["a dog", 3]}, ["'a.png'", "caption 2", "expected a string"]),
    ('{"a.png": ["a dog"],\n "b.png": ["a cat"', ["not valid JSON", "line 2"]),
    ('["a.png", "b.png"]', ["expected a JSON object"]),
    ({}, ["no entries"]),
])
def test_reader_bad_inputs_name_the_entry(tmp_path, captions, expected):
    folder, path = _folder(tmp_path, captions)
    with pytest.raises(DataError) as err:
        reader.read_folder(folder, path, 16)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_reader_unreadable_image_names_the_entry(tmp_path):
    folder, path = _folder(tmp_path, {"a.png": ["a dog"], "b.png": ["a cat"]})
    (folder / "b.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"'b.png'.*cannot be read"):
        reader.read_folder(folder, path, 16)


def test_prepare_from_a_folder(tmp_path, monkeypatch):
    names = [f"{i}.png" for i in range(12)]
    folder, path = _folder(tmp_path, {n: [f"a picture number {i}", "a picture"] for i, n in enumerate(names)}, names)
    params = load_params()
    params["scale"] = "smoke"
    params["tasks"] = {"captioning": params["tasks"]["captioning"]}
    params["tasks"]["captioning"]["data"] = {"source": "folder", "folder": {"images": str(folder), "captions": str(path),
                                                                           "split": {"valid": 0.2, "test": 0.2}}}
    validate(params)
    out = tmp_path / "prepared"
    manifest = TASK.prepare(params, out)
    assert manifest["images"] == {"train": 8, "valid": 2, "test": 2}
    data = Data(out)
    assert data.masks is None and data.objects is None
    assert sorted(sum(data.names.values(), [])) == sorted(names)


# ---- model and decoding ---------------------------------------------------------------------------
def _model(attention: str, seed: int = 0) -> Captioner:
    torch.manual_seed(seed)
    return Captioner(12, attention=attention, attention_options={"attn_dim": 16} if attention in ("additive", "hard_reinforce") else {},
                     channels=[8, 8], image_size=32, emb_dim=8, hidden=16, dropout=0.0).eval()


@pytest.mark.parametrize("attention", ["none", "additive", "hard_reinforce", "general"])
def test_beam_one_equals_greedy(attention):
    model = _model(attention)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 255, size=(6, 32, 32, 3), dtype=np.uint8))
    ids, alphas = model.greedy(images, max_len=9)
    lengths = set()
    for i, (beam_ids, beam_alpha, _) in enumerate(model.beam_search(images, beam_size=1, max_len=9)):
        assert beam_ids == ids[i]
        lengths.add(len(beam_ids))
        if attention == "none":
            assert beam_alpha is None and alphas[i] is None
        else:
            assert torch.allclose(beam_alpha, alphas[i])
            assert beam_alpha.shape == (min(len(ids[i]) + 1, 9), 64)
            assert torch.allclose(beam_alpha.sum(-1), torch.ones(len(beam_alpha)))


def _one_image_beam_search(model: Captioner, image, beam_size: int, max_len: int):
    """Beam search written the plain way, one image and one hypothesis at a time in Python: the reference
    the batched search must reproduce (hypotheses that emit EOS leave the beam, which shrinks)."""
    feats, (h, c) = model.encode(image.unsqueeze(0))
    alive = [([], [], 0.0, h[0], c[0])]          # tokens, alphas, score, state
    finished, k = [], beam_size
    for _ in range(max_len):
        cands = []
        for tokens, alphas, score, hh, cc in alive:
            token = torch.tensor([tokens[-1] if tokens else BOS])
            logits, (h1, c1), alpha, _, _ = model.step(token, (hh[None], cc[None]), feats)
            logp = logits.log_softmax(-1)[0]
            for word in range(len(logp)):
                cands.append((score + float(logp[word]), word, tokens, alphas + ([alpha[0]] if alpha is not None else []),
                              h1[0], c1[0]))
        cands.sort(key=lambda x: -x[0])
        alive = []
        for s, word, tokens, alphas, hh, cc in cands[:k]:
            if word == EOS:
                finished.append((s, tokens, alphas))
            else:
                alive.append((tokens + [word], alphas, s, hh, cc))
        k -= sum(1 for cand in cands[:k] if cand[1] == EOS)
        if k <= 0 or not alive:
            break
    else:
        finished += [(s, tokens, alphas) for tokens, alphas, s, _, _ in alive]
    s, tokens, alphas = max(finished, key=lambda f: f[0])
    return tokens, (torch.stack(alphas) if alphas else None), s


def _decisive_model(attention: str, seed: int) -> Captioner:
    """An untrained captioner with its weights scaled up, so its words depend strongly on the image and the
    previous word: captions of different images end at different steps (or run to max_len)."""
    model = _model(attention, seed=seed)
    with torch.no_grad():
        for module in (model.out, model.deep, model.cell, model.encoder, model.embed):
            for p in module.parameters():
                p.mul_(4.0)
        model.init.weight.mul_(30.0)
    return model


def _blocky_images(n: int) -> torch.Tensor:
    """Images of 2x2 flat colour blocks: more different from each other, to a random CNN, than noise is."""
    coarse = np.random.default_rng(4).integers(0, 255, size=(n, 2, 2, 3))
    return torch.from_numpy(coarse.repeat(16, 1).repeat(16, 2).astype(np.uint8))


@pytest.mark.parametrize("attention,beam,seed", [("none", 3, 3), ("additive", 3, 3), ("additive", 5, 3),
                                                 ("hard_reinforce", 2, 0), ("hard_reinforce", 3, 4),
                                                 ("general", 4, 0), ("general", 3, 5)])
def test_batched_beam_search_equals_one_image_at_a_time(attention, beam, seed):
    model = _decisive_model(attention, seed)
    images = _blocky_images(10)
    batched = model.beam_search(images, beam_size=beam, max_len=7)
    lengths = set()
    with torch.no_grad():
        for image, (ids, alphas, score) in zip(images, batched):
            ref_ids, ref_alphas, ref_score = _one_image_beam_search(model, image, beam, 7)
            assert ids == ref_ids
            assert score == pytest.approx(ref_score, abs=1e-4)
            lengths.add(len(ids))
            if attention == "none":
                assert alphas is None and ref_alphas is None
            else:
                assert alphas.shape == ref_alphas.shape and torch.allclose(alphas, ref_alphas, atol=1e-5)
    assert len(lengths) > 1             # the images' captions end at different steps


def test_beam_search_without_eos_returns_the_best_running_hypothesis_at_max_len():
    model = _model("additive", seed=2)
    with torch.no_grad():
        model.out.bias[EOS] = -1e4                    # no hypothesis ever finishes
    images = torch.from_numpy(np.random.default_rng(5).integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        for image, (ids, alphas, score) in zip(images, model.beam_search(images, beam_size=3, max_len=6)):
            ref_ids, ref_alphas, ref_score = _one_image_beam_search(model, image, 3, 6)
            assert len(ids) == 6 and alphas.shape == (6, 64)
            assert ids == ref_ids and score == pytest.approx(ref_score, abs=1e-4)
            assert torch.allclose(alphas, ref_alphas, atol=1e-5)


def test_beam_search_scores_a_wider_beam_at_least_as_high_on_average():
    model = _model("additive", seed=5)
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8))
    one = [s for _, _, s in model.beam_search(images, 1, 9)]
    four = [s for _, _, s in model.beam_search(images, 4, 9)]
    assert np.mean(four) >= np.mean(one) - 1e-6
    assert any(f > o + 1e-6 for f, o in zip(four, one))


def test_beam_search_stops_at_eos():
    model = _model("none")
    with torch.no_grad():
        model.out.bias.fill_(-10.0)
        model.out.bias[EOS] = 10.0                    # EOS is (nearly) certain at every step
    [(ids, _, score)] = model.beam_search(torch.zeros(1, 32, 32, 3, dtype=torch.uint8), beam_size=3, max_len=9)
    assert ids == [] and score > -1e-3


# ---- losses ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    params = load_params()
    params["scale"] = "smoke"
    section = params["tasks"]["captioning"]
    section["scales"]["smoke"] = {"train_size": 24, "valid_size": 6, "test_size": 8, "epochs": 1}
    section["models"]["cnn_lstm"] = {"channels": [8, 8, 8], "image_size": 64, "emb_dim": 8, "hidden": 16, "dropout": 0.0}
    out = tmp_path_factory.mktemp("prepared")
    TASK.prepare(params, out)
    return params, Data(out)


def _batch_loss(params, data, run, **options):
    cfg = resolve_run(params, "captioning", run, 0)
    cfg["attention_options"] = {**cfg["attention_options"], **options}
    torch.manual_seed(0)
    model = TASK.build_model(cfg, data).train()
    batch = next(iter(TASK.batches(data, cfg, torch.Generator().manual_seed(0))))
    torch.manual_seed(1)
    loss, n = TASK.loss(model, batch, torch.device("cpu"))
    return model, loss, n


def test_doubly_stochastic_regulariser_adds_to_the_loss(tiny):
    params, data = tiny
    _, plain, n = _batch_loss(params, data, "soft-attend", doubly_stochastic=0.0)
    _, reg, _ = _batch_loss(params, data, "soft-attend", doubly_stochastic=1.0)
    assert n > 0 and reg.item() > plain.item()


def test_hard_attention_reinforce_trains_the_location_scores_and_moves_the_baseline(tiny):
    params, data = tiny
    model, loss, _ = _batch_loss(params, data, "hard-attend", semi_sampling=1.0)
    assert bool(model.baseline_set) and model.baseline.item() < 0       # mean log-likelihood of the first batch
    loss.backward()
    assert model.attn.w_q.weight.grad is not None and model.attn.w_q.weight.grad.abs().sum() > 0
    # without the REINFORCE and entropy terms the location scores get no gradient (the sample is discrete)...
    model2, loss2, _ = _batch_loss(params, data, "hard-attend", reinforce=0.0, entropy=0.0, semi_sampling=1.0)
    loss2.backward()
    assert model2.attn.w_q.weight.grad is None or model2.attn.w_q.weight.grad.abs().sum() == 0
    # ...unless some captions use the expected context (the default semi_sampling 0.5): those backpropagate
    model3, loss3, _ = _batch_loss(params, data, "hard-attend", reinforce=0.0, entropy=0.0)
    assert model3.semi_sampling == 0.5
    loss3.backward()
    assert model3.attn.w_q.weight.grad is not None and model3.attn.w_q.weight.grad.abs().sum() > 0


# ---- metrics --------------------------------------------------------------------------------------
def test_bleu_scores_against_all_references():
    refs = [["a red circle left of a blue square", "a blue square right of a red circle"], ["a green triangle"]]
    perfect, signature = bleu_scores(["a blue square right of a red circle", "a green triangle"], refs)
    assert all(v == 100.0 for v in perfect.values()) and "nrefs:var" in signature   # 2 and 1 references
    partial, _ = bleu_scores(["a red circle right of a green square", "a green circle"], refs)
    assert 0 < partial["bleu4"] < partial["bleu3"] < partial["bleu2"] < partial["bleu1"] < 100


def test_localisation_hits_when_the_peak_is_on_the_named_object(tiny):
    _, data = tiny
    objs = data.objects["test"]
    i = next(k for k, o in enumerate(objs) if len(o) == 1)
    o = objs[i][0]
    caption = f"a {o['colour']} {o['shape']}"
    grid = 8
    on = np.full((4, grid * grid), 1e-3)
    on[2, (o["cy"] // 8) * grid + o["cx"] // 8] = 1.0               # step 2 emitted the shape word
    off = np.full((4, grid * grid), 1e-3)
    corner = 0 if o["cx"] > 16 or o["cy"] > 16 else grid * grid - 1
    off[2, corner] = 1.0
    hit = localisation([caption], [on], _only(data, i), grid)["summary"]
    miss = localisation([caption], [off], _only(data, i), grid)["summary"]
    assert hit["localisation"] == 1.0 and miss["localisation"] == 0.0 and hit["shape_words_scored"] == 1
    assert 0 < hit["localisation_chance"] < 0.5
    # the step rule: the peak on the object one step early (at the colour word) is a miss for the shape word
    early = np.full((4, grid * grid), 1e-3)
    early[1, (o["cy"] // 8) * grid + o["cx"] // 8] = 1.0
    early[2, corner] = 1.0
    shifted = localisation([caption], [early], _only(data, i), grid)["summary"]
    assert shifted["localisation"] == 0.0 and shifted["localisation_colour_word"] == 1.0


def _only(data: Data, i: int) -> Data:
    clone = object.__new__(Data)
    clone.__dict__.update(data.__dict__)
    clone.objects = {"test": [data.objects["test"][i]]}
    clone.masks = data.masks[i:i + 1]
    return clone


# ---- params -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, expected", [
    (lambda s: s["runs"]["show-tell"].__setitem__("options", {"attn_dim": 8}), ["runs.show-tell.options.attn_dim", "unknown option"]),
    (lambda s: s["runs"]["soft-attend"].__setitem__("options", {"attn_size": 8}), ["runs.soft-attend.options", "attn_size"]),
    (lambda s: s["eval"].__setitem__("beam_size", 0), ["tasks.captioning.eval.beam_size", ">= 1"]),
    (lambda s: s["models"]["cnn_lstm"].__setitem__("channels", [4, 4, 4, 4, 4, 4]), ["models.cnn_lstm.channels", "too many"]),
    (lambda s: s["data"].__setitem__("source", "folder"), ["tasks.captioning.data", "folder"]),
    (lambda s: s["models"]["cnn_lstm"].__setitem__("pools", 4), ["models.cnn_lstm.pools", "exceeds the 3 stages"]),
    (lambda s: s["runs"]["soft-attend"]["options"].__setitem__("semi_sampling", 0.5), ["runs.soft-attend.options", "semi_sampling"]),
    (lambda s: s["runs"]["hard-attend"]["options"].__setitem__("semi_sampling", 1.5), ["hard-attend.options.semi_sampling"]),
])
def test_bad_params_name_the_key(edit, expected):
    params = load_params()
    edit(params["tasks"]["captioning"])
    with pytest.raises(ParamsError) as err:
        validate(params)
    for part in expected:
        assert part in str(err.value)


# ---- end to end through the CLI -------------------------------------------------------------------
def test_cli_prepare_train_evaluate(tmp_path):
    params = load_params()
    params["scale"] = "smoke"
    params["tasks"] = {"captioning": params["tasks"]["captioning"]}
    section = params["tasks"]["captioning"]
    section["scales"]["smoke"] = {"train_size": 40, "valid_size": 10, "test_size": 12, "epochs": 1}
    section["models"]["cnn_lstm"].update(channels=[8, 8, 8], emb_dim=8, hidden=16)
    section["eval"]["show_images"] = 2
    write_params(tmp_path / "params.yaml", params)
    run(["attnbench", "prepare", "--task", "captioning"], tmp_path)
    for name in ("soft-attend", "show-tell"):
        run(["attnbench", "--threads", "1", "train", "--task", "captioning", "--run", name, "--seed", "0"], tmp_path)
        run(["attnbench", "--threads", "1", "evaluate", "--task", "captioning", "--run", name, "--seed", "0"], tmp_path)
    out = tmp_path / "data/results/captioning/synthetic/soft-attend/seed0"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"bleu1", "bleu4", "bleu_signature", "localisation", "localisation_chance"} <= set(metrics)
    assert metrics["test_images"] == 12 and "nrefs:4" in metrics["bleu_signature"]
    with np.load(out / "attention.npz") as z:
        assert z["image_0"].shape == (64, 64, 3)
        if len(z["caption_0"]) and z["caption_0"][0]:
            assert z["alpha_0"].shape[1:] == (8, 8) and z["alpha_0"].shape[0] >= len(z["caption_0"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and len(samples[0]["references"]) == 4
    none = json.loads((tmp_path / "data/results/captioning/synthetic/show-tell/seed0/metrics.json").read_text())
    assert none["localisation"] is None


# ---- encoder grid, initial state, hard attention's expected-context captions (issue 6) ---------------
def test_pools_sets_the_attention_grid_and_the_cells_follow_the_image():
    torch.manual_seed(0)
    coarse = Captioner(12, attention="additive", channels=[8, 8, 8], image_size=64, emb_dim=8, hidden=16)
    fine = Captioner(12, attention="additive", channels=[8, 8, 8], image_size=64, pools=2, emb_dim=8, hidden=16)
    assert coarse.grid == 8 and fine.grid == 16
    images = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    images[0, 40:48, 8:16] = 255                          # a bright patch in grid row 10-11, column 2-3 of the 16x16 grid
    feats = fine.encoder(images)
    assert feats.shape == (1, 256, fine.encoder.dim)
    plain = fine.encoder(torch.zeros_like(images))
    changed = (feats - plain).abs().sum(-1).reshape(16, 16)
    assert changed[10, 2] > 0 and changed[0, 15] == 0     # row-major (y, x) cells: far cells do not see the patch
    with pytest.raises(ValueError, match="pools"):
        Captioner(12, attention="additive", channels=[8, 8], image_size=64, pools=3)


def test_zero_initial_state_hides_the_image_from_the_initial_state_only():
    torch.manual_seed(0)
    model = Captioner(12, attention="additive", attention_options={"attn_dim": 8}, channels=[8, 8], image_size=32,
                      emb_dim=8, hidden=16, dropout=0.0, init_state="zeros").eval()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8))
    _, (h, c) = model.encode(images)
    assert h.abs().sum() == 0 and c.abs().sum() == 0
    logits, *_ = model(images, torch.full((2, 3), 1), torch.arange(2))
    assert not torch.allclose(logits[0], logits[1])        # the image still reaches the words through attention
    with pytest.raises(ValueError, match="needs attention"):
        Captioner(12, attention="none", init_state="zeros")


def test_hard_attention_semi_sampling_uses_the_expected_context_for_unsampled_captions():
    torch.manual_seed(0)
    model = Captioner(12, attention="hard_reinforce", attention_options={"attn_dim": 8}, channels=[8, 8], image_size=32,
                      emb_dim=8, hidden=16, dropout=0.0, semi_sampling=0.5).train()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, size=(1, 32, 32, 3), dtype=np.uint8))
    feats, state = model.encode(images)
    token = torch.full((4,), 1)
    feats, state = feats.expand(4, -1, -1), (state[0].expand(4, -1), state[1].expand(4, -1))
    sampled = torch.tensor([True, False, True, False])
    logits, _, alpha, logp, _ = model.step(token, state, feats, sampled)
    assert (logp[~sampled] == 0).all() and (logp[sampled] < 0).all()
    # unsampled rows: the expected context, identical (no sampling noise) and differentiable in the scores
    assert torch.allclose(logits[1], logits[3])
    logits[1].sum().backward()
    assert model.attn.v.weight.grad.abs().sum() > 0
    # in forward, about half of the captions sample (one draw per caption); with 1.0 all do, as before
    N = 400
    _, _, logps, _ = model(images, torch.full((N, 2), 1), torch.zeros(N, dtype=torch.long))
    share = float((logps[:, 0] != 0).float().mean())
    assert 0.4 < share < 0.6 and ((logps[:, 0] != 0) == (logps[:, 1] != 0)).all()
    model.semi_sampling = 1.0
    _, _, logps, _ = model(images, torch.full((N, 2), 1), torch.zeros(N, dtype=torch.long))
    assert (logps != 0).all()
    with pytest.raises(ValueError, match="semi_sampling"):
        Captioner(12, attention="hard_reinforce", semi_sampling=1.5)
