"""glimpse: the glimpse sensor, the split by source image, the .npz reader's errors, params checks,
RAM's REINFORCE gradients and a smoke run through the CLI up to the report section."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnbench import attention, cli, paths
from attnbench.attention.glimpse import extract_glimpse, extract_glimpses
from attnbench.config import REPO_ROOT, ParamsError, for_dataset
from attnbench.validation import load_params, validate
from attnbench.errors import DataError
from attnbench.tasks.glimpse.data import compose, image_groups, read_npz, split_images, upsample

from .conftest import write_params


# ---------------------------------------------------------------- the glimpse sensor
def _expected(canvas: np.ndarray, top: int, left: int, side: int, factor: int) -> np.ndarray:
    pad = 64
    padded = np.pad(canvas, pad)
    crop = padded[pad + top:pad + top + side, pad + left:pad + left + side]
    return crop.reshape(side // factor, factor, side // factor, factor).mean(axis=(1, 3))


def test_sensor_extracts_the_known_patch_at_each_scale():
    canvas = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    images = torch.from_numpy(canvas).view(1, 1, 40, 40)
    # centre at pixel (row 20, col 12): location (20/40*2-1, 12/40*2-1) = (0, -0.4)
    loc = torch.tensor([[0.0, -0.4]])
    g = extract_glimpse(images, loc, patch=8, scales=3)
    assert g.shape == (1, 3, 1, 8, 8)
    np.testing.assert_array_equal(g[0, 0, 0].numpy(), canvas[16:24, 8:16])           # 8 px, as is
    np.testing.assert_allclose(g[0, 1, 0].numpy(), _expected(canvas, 12, 4, 16, 2))  # 16 px, pooled by 2
    np.testing.assert_allclose(g[0, 2, 0].numpy(), _expected(canvas, 4, -4, 32, 4))  # 32 px, off the left edge
    # the coarse view starts 4 px left of the canvas: its first pooled column reads zeros only
    assert g[0, 2, 0, 0, 0].item() == 0.0
    assert g[0, 2, 0, 0, 1].item() == pytest.approx(canvas[4:8, 0:4].mean())


def test_sensor_reads_a_lone_digit_wherever_it_is_and_zeros_off_the_canvas():
    images = torch.zeros(2, 1, 40, 40)
    images[0, 0, 30:38, 2:10] = 1.0          # an 8x8 block centred at (34, 6)
    images[1, 0, 0:8, 32:40] = 2.0           # another at (4, 36)
    loc = torch.tensor([[34 / 20 - 1, 6 / 20 - 1], [4 / 20 - 1, 36 / 20 - 1]])
    g = extract_glimpse(images, loc, patch=8, scales=2)
    assert torch.all(g[0, 0] == 1.0) and torch.all(g[1, 0] == 2.0)
    # the 16-px scale around a corner block: the block fills the middle 4x4 of the pooled view
    assert g[1, 1, 0, 2:6, 2:6].eq(2.0).all() and g[1, 1].sum() == pytest.approx(2.0 * 16)
    far = extract_glimpse(images, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), 8, 1)
    assert far[0].sum() == 0                 # top-left corner of the first canvas: blank / off the canvas
    assert far[1, 0, 0, :4, :4].eq(0).all()  # three quarters of the view are off the canvas


def test_glimpse_mechanism_policy_sampling_and_footprint():
    torch.manual_seed(0)
    mech = attention.build("glimpse", 16, 1, 1, patch=4, scales=2, std=0.2)
    assert mech.retina_dim == 2 * 4 * 4 and mech.output_dim == mech.retina_dim + 2
    q = torch.randn(5, 16)
    images = torch.rand(5, 1, 20, 20)
    mech.eval()
    a, b = mech.step(q, images), mech.step(q, images)
    assert torch.equal(a.location, b.location) and torch.equal(a.location, a.mean) and torch.all(a.log_prob == 0)
    mech.train()
    s = mech.step(q, images)
    assert not torch.equal(s.location, s.mean) and s.location.abs().max() <= 1
    assert s.log_prob.requires_grad and not s.location.requires_grad
    s.log_prob.sum().backward()
    assert mech.policy.weight.grad.abs().sum() > 0
    w = mech.footprint(torch.zeros(1, 2), 20, 20).view(20, 20)
    assert w.sum().item() == pytest.approx(1.0)
    assert w[8:12, 8:12].sum().item() == pytest.approx(0.5 + 0.5 * 16 / 64)   # the fine 4x4 inside the coarse 8x8
    assert w[:6].sum() == 0 and w[14:].sum() == 0


def test_many_glimpses_at_once_equal_one_at_a_time():
    """extract_glimpses reads N locations per image in one pass; each retina equals extract_glimpse's there,
    and the mechanism's common-interface attend (every query at once) equals locating, reading and
    taking the footprint query by query, in values and in gradients."""
    torch.manual_seed(3)
    images = torch.rand(2, 3, 11, 14)
    locs = torch.rand(2, 5, 2) * 2.4 - 1.2                                  # some off the canvas
    many = extract_glimpses(images, locs, patch=4, scales=3)
    assert many.shape == (2, 5, 3, 3, 4, 4)
    for n in range(5):
        assert torch.equal(many[:, n], extract_glimpse(images, locs[:, n], patch=4, scales=3))

    mech = attention.build("glimpse", 6, 3, 3, patch=4, scales=2, height=11).train()
    values = torch.rand(2, 11 * 14, 3, requires_grad=True)
    query = torch.randn(2, 7, 6)
    mask = torch.rand(2, 11 * 14) > 0.2
    torch.manual_seed(0)
    context, weights = mech.attend(query, values, values, mask, None)
    (context.sum() + (weights * 3).sum()).backward()
    at_once = (context.detach(), weights.detach(), values.grad.clone(), mech.policy.weight.grad.clone())
    values.grad, mech.policy.weight.grad = None, None
    torch.manual_seed(0)
    img = (values * mask.unsqueeze(-1)).transpose(1, 2).reshape(2, 3, 11, 14)
    steps = []
    for t in range(7):
        loc = mech.locate(query[:, t], True)[0]
        steps.append((torch.cat([mech.read(img, loc), loc], -1), mech.footprint(loc, 11, 14, mask)))
    ctx1, w1 = (torch.stack(parts, 1) for parts in zip(*steps))
    (ctx1.sum() + (w1 * 3).sum()).backward()
    one_by_one = (ctx1.detach(), w1.detach(), values.grad, mech.policy.weight.grad)
    for a, b in zip(at_once, one_by_one):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- data and split
def test_split_keeps_identical_images_together_and_is_stratified():
    rng = np.random.default_rng(0)
    images = rng.random((200, 8, 8)).astype(np.float32)
    images[150:] = images[:50]                       # 50 exact duplicates
    labels = np.repeat(np.arange(10), 20)
    labels[150:] = labels[:50]
    groups = image_groups(images)
    assert len(np.unique(groups)) == 150
    split = split_images(labels, groups, 0.1, 0.3, seed=3)
    for i in range(50):
        assert split[i] == split[150 + i]
    for s in ("train", "valid", "test"):
        assert (split == s).sum() > 0
    for c in np.unique(labels):                      # every class in test and in train
        assert 0 < (split[labels == c] == "test").sum() < (labels == c).sum()
        assert (split[labels == c] == "train").sum() > 0


def test_compose_records_the_truth_and_draws_clutter_from_the_given_images():
    rng = np.random.default_rng(1)
    digits = np.zeros((6, 16, 16), dtype=np.float32)
    for i in range(6):
        digits[i, 2:14, 3 + i:5 + i] = 0.2 + 0.1 * i          # a distinct bar per image
    labels = np.arange(6)
    members = np.array([1, 3, 5])
    c = compose(digits, labels, members, 4, "cluttered", 40, 3, 6, rng)
    assert c.images.shape == (12, 40, 40) and c.images.dtype == np.uint8
    assert set(c.source.tolist()) == {1, 3, 5} and set(c.clutter.ravel().tolist()) <= {1, 3, 5}
    assert np.all(c.clutter != c.source[:, None])               # clutter never from the canvas's own digit
    for i in range(12):
        y0, x0, y1, x1 = c.box[i]
        assert y1 - y0 == 16 and 0 <= y0 and y1 <= 40 and 0 <= x0 and x1 <= 40
        region = c.images[i, y0:y1, x0:x1] / 255.0
        assert np.all(region >= digits[c.source[i]] - 1 / 255)  # the digit is there (clutter only adds)
        assert c.labels[i] == labels[c.source[i]]
    centred = compose(digits, labels, members, 4, "centred", 40, 3, 6, rng)
    assert len(centred.labels) == 3 and centred.clutter.shape == (3, 0)
    assert np.all(centred.box == [12, 12, 28, 28])
    np.testing.assert_array_equal(centred.images[0, 12:28, 12:28], np.round(digits[1] * 255).astype(np.uint8))
    assert centred.images[0].sum() == np.round(digits[1] * 255).astype(np.uint8).sum()   # nothing else drawn


def _tiny(runs=("ram-cluttered", "cnn-cluttered", "soft-centred", "mlp-centred")) -> dict:
    p = load_params(REPO_ROOT / "params.yaml", {"scale": "smoke"})
    p["tasks"] = {"glimpse": p["tasks"]["glimpse"]}
    t = p["tasks"]["glimpse"]
    t["scales"]["smoke"] = {"digits": 200, "train_placements": 1, "epochs": 1}
    t["data"]["canvas"] = 32
    t["models"]["ram"].update(glimpses=3, glimpse_hidden=16, location_hidden=8, hidden=16)
    t["models"]["soft"].update(conv=[4, 8], hidden=16, steps=2)
    t["models"]["cnn"].update(conv=[4, 8], hidden=16)
    t["models"]["mlp"].update(hidden=[32])
    t["eval"]["show"] = 5
    t["runs"] = {r: t["runs"][r] for r in runs}
    return p


def _cli(path, *argv):
    assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv


def test_prepared_split_shares_no_digit_image_between_splits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", _tiny())
    _cli(path, "prepare", "--task", "glimpse")
    manifest = json.loads((paths.prepared_dir("glimpse", "synthetic") / "manifest.json").read_text())
    assert manifest["images_used"] == 200 and manifest["digit_size"] == 16 and manifest["canvas"] == 32
    from sklearn.datasets import load_digits

    originals = load_digits().images
    with np.load(paths.prepared_dir("glimpse", "synthetic") / "canvases.npz") as z:
        index = z["original_index"]
        used = {}
        for s in ("train", "valid", "test"):
            ids = set()
            for v in ("cluttered", "centred"):
                ids |= set(z[f"{v}_{s}_source"].tolist()) | (set(z[f"{v}_{s}_clutter"].ravel().tolist()) - {-1})
            # compare the pixels of the original images, not just their indices
            used[s] = {originals[index[i]].tobytes() for i in ids}
            assert len(z[f"cluttered_{s}_labels"]) > 0 and len(z[f"centred_{s}_labels"]) > 0
        assert z["cluttered_valid_labels"].shape[0] == 2 * z["centred_valid_labels"].shape[0]
    assert not used["train"] & used["test"] and not used["train"] & used["valid"] and not used["valid"] & used["test"]
    assert set(manifest["shared_source_images"].values()) == {0}


# ---------------------------------------------------------------- the .npz reader
def test_npz_reader_accepts_a_good_file_and_names_what_is_wrong(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, images=np.random.default_rng(0).integers(0, 256, (30, 10, 10)), labels=np.arange(30) % 3)
    src = read_npz(good)
    assert src.images.shape == (30, 10, 10) and src.images.max() == pytest.approx(1.0) and src.labels.max() == 2
    cases = {
        "missing.npz": (None, "file not found"),
        "nokey.npz": ({"pixels": np.zeros((2, 4, 4))}, "no array 'images'"),
        "shape.npz": ({"images": np.zeros((4, 16)), "labels": np.zeros(4, int)}, "expected [N, H, W]"),
        "count.npz": ({"images": np.ones((4, 4, 4)), "labels": np.zeros(3, int)}, "one label per image"),
        "float.npz": ({"images": np.ones((3, 4, 4)), "labels": np.array([0, 1.5, 2])}, "labels[1] is 1.5"),
        "neg.npz": ({"images": np.concatenate([np.ones((2, 4, 4)), -np.ones((1, 4, 4))]), "labels": np.zeros(3, int)},
                    "images[2] holds a negative"),
        "blank.npz": ({"images": np.zeros((3, 4, 4)), "labels": np.zeros(3, int)}, "blank"),
    }
    for name, (arrays, expected) in cases.items():
        f = tmp_path / name
        if arrays is not None:
            np.savez(f, **arrays)
        with pytest.raises(DataError) as err:
            read_npz(f)
        assert name in str(err.value) and expected in str(err.value), str(err.value)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="garbage.npz: not a readable .npz"):
        read_npz(garbage)


def test_npz_source_through_prepare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", images=rng.integers(0, 9, (120, 12, 12)), labels=np.arange(120) % 4)
    p = _tiny()
    p["tasks"]["glimpse"]["data"].update(source="npz", npz={"path": "mine.npz"}, upsample=1)
    path = write_params(tmp_path / "params.yaml", p)
    _cli(path, "prepare", "--task", "glimpse")
    manifest = json.loads((paths.prepared_dir("glimpse", "synthetic") / "manifest.json").read_text())
    assert manifest["classes"] == 4 and manifest["digit_size"] == 12 and manifest["origin"] == "mine.npz"
    p["tasks"]["glimpse"]["data"]["upsample"] = 3       # 36 > canvas 32
    path = write_params(tmp_path / "params.yaml", p)
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "glimpse"]) == 1


# ---------------------------------------------------------------- params checks
@pytest.mark.parametrize("edit,message", [
    (lambda r: r["ram-cluttered"].update(attention="additive"), "expected: glimpse"),
    (lambda r: r["cnn-cluttered"].update(attention="additive"), "expected: none"),
    (lambda r: r["soft-centred"].update(attention="glimpse"), "it lacks attention over a sequence of keys for a query "
                                                              "(it attends over image locations (glimpses))"),
    (lambda r: r["mlp-centred"]["options"].update(variant="translated"), "options.variant"),
    (lambda r: r["ram-cluttered"]["options"].update(scales=5), "options.scales"),
])
def test_bad_runs_are_refused_with_the_key(edit, message):
    p = _tiny()
    edit(p["tasks"]["glimpse"]["runs"])
    with pytest.raises(ParamsError) as err:
        validate(p)
    assert message in str(err.value) and "tasks.glimpse" in str(err.value)


# ---------------------------------------------------------------- RAM and the smoke run
def test_ram_reinforce_trains_the_policy_and_the_baseline_only_through_their_terms(tmp_path, monkeypatch):
    from attnbench import tasks
    from attnbench.config import resolve_run

    monkeypatch.chdir(tmp_path)
    p = _tiny()
    path = write_params(tmp_path / "params.yaml", p)
    _cli(path, "prepare", "--task", "glimpse")
    cfg = resolve_run(p, "glimpse", "ram-cluttered", 0)
    task = tasks.get("glimpse")
    data = task.load(paths.prepared_dir("glimpse", "synthetic"), cfg)
    torch.manual_seed(0)
    model = task.build_model(cfg, data).train()
    batch = next(iter(task.batches(data, cfg, torch.Generator().manual_seed(0))))
    loss, n = task.loss(model, batch, torch.device("cpu"))
    loss.backward()
    assert n == len(batch[1])
    for name in ("sensor.policy.weight", "baseline.weight", "classifier.weight", "core.weight_ih", "what.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # without the REINFORCE term, the policy gets no gradient at all (the locations are detached)
    model.zero_grad()
    logits, extras = model(batch[0])
    F.cross_entropy(logits, batch[1]).backward()
    assert model.sensor.policy.weight.grad is None or model.sensor.policy.weight.grad.abs().sum() == 0
    assert extras["locations"].shape == (len(batch[1]), 3, 2) and torch.all(extras["locations"][:, 0] == 0)


def test_smoke_runs_export_glimpses_and_render_the_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _tiny()
    path = write_params(tmp_path / "params.yaml", p)
    _cli(path, "prepare", "--task", "glimpse")
    for run in p["tasks"]["glimpse"]["runs"]:
        _cli(path, "train", "--task", "glimpse", "--run", run, "--seed", "0")
        _cli(path, "evaluate", "--task", "glimpse", "--run", run, "--seed", "0")
    manifest = json.loads((paths.prepared_dir("glimpse", "synthetic") / "manifest.json").read_text())
    ram = json.loads((paths.run_dir("glimpse", "synthetic", "ram-cluttered", 0) / "metrics.json").read_text())
    n_test = manifest["canvases"]["cluttered"]["test"]
    assert ram["variant"] == "cluttered" and ram["test_canvases"] == n_test
    assert ram["error"] == pytest.approx(1 - ram["accuracy"]) and ram["error_cluttered"] == ram["error"]
    assert ram["error_centred"] is None and 0 <= ram["on_digit"] <= 1
    with np.load(paths.run_dir("glimpse", "synthetic", "ram-cluttered", 0) / "attention.npz") as z:
        assert z["locations"].shape == (n_test, 3, 2) and np.abs(z["locations"]).max() <= 1
        assert z["labels"].shape == z["predictions"].shape == (n_test,) and z["shown_images"].shape == (5, 32, 32)
        acc = (z["labels"] == z["predictions"]).mean()
    assert ram["accuracy"] == pytest.approx(acc, abs=1e-5)
    with np.load(paths.run_dir("glimpse", "synthetic", "ram-cluttered", 0) / "items.npz") as z:
        assert (z["labels"] == z["predictions"]).mean() == pytest.approx(acc, abs=1e-6)
    samples = (paths.run_dir("glimpse", "synthetic", "ram-cluttered", 0) / "samples.jsonl").read_text().splitlines()
    assert len(samples) == n_test and len(json.loads(samples[0])["glimpses_px"]) == 3
    soft = json.loads((paths.run_dir("glimpse", "synthetic", "soft-centred", 0) / "metrics.json").read_text())
    assert soft["error_centred"] == soft["error"] and soft["error_cluttered"] is None
    assert soft["test_canvases"] == manifest["canvases"]["centred"]["test"] and 0 <= soft["on_digit"] <= 1
    mlp = json.loads((paths.run_dir("glimpse", "synthetic", "mlp-centred", 0) / "metrics.json").read_text())
    assert mlp["on_digit"] is None
    # the report section renders from these results, with its claim computed
    from attnbench.report import render_report
    from attnbench.report.aggregate import aggregate

    aggregate(for_dataset(p, "glimpse", "synthetic"), "glimpse")
    out = tmp_path / "reports" / "index.html"
    render_report(p, out)
    html = out.read_text()
    assert "ram-cluttered" in html and "C5" in html and "glimpse paths" in html.lower()
