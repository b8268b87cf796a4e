"""Ships task: IoU against a hand-computed confusion matrix, the PNG-folder reader's bad inputs, the
generator's ground truth, the models and the task-partitioning gate, and claim C11's verdict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnbench.config import ParamsError, resolve_run
from attnbench.validation import load_params, validate
from attnbench.errors import DataError
from attnbench.metrics import binary_iou, segmentation_scores
from attnbench.models.segmenter import DeepFCN, ShallowFCN, TaskPartition
from attnbench.tasks.ships.report import claim_c11
from attnbench.tasks.ships import Ships, show_tiles
from attnbench.tasks.ships.data import BOW_STERN, CLASSES, HULL, LAND, generate, read_folder

from .conftest import ROOT, copy_pipeline, run

CLASS_NAMES = list(CLASSES)


# ---------------------------------------------------------------- metrics
def test_iou_matches_a_hand_computed_confusion_matrix():
    gold = np.array([[0, 0, 1, 1],
                     [0, 2, 2, 1],
                     [3, 3, 2, 1]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 2, 3, 1],
                     [3, 0, 2, 2]])
    # rows gold, columns predicted, counted by hand:
    #   gold 0 (3 px): pred 0,1,0         -> [2, 1, 0, 0]
    #   gold 1 (4 px): pred 1,1,1,2       -> [0, 3, 1, 0]
    #   gold 2 (3 px): pred 2,3,2         -> [0, 0, 2, 1]
    #   gold 3 (2 px): pred 3,0           -> [1, 0, 0, 1]
    cm = np.array([[2, 1, 0, 0], [0, 3, 1, 0], [0, 0, 2, 1], [1, 0, 0, 1]])
    out = segmentation_scores(gold, pred, CLASS_NAMES)
    assert out["confusion"] == cm.tolist()
    # IoU_c = C[c,c] / (row_c + col_c - C[c,c])
    expected = {"sea": 2 / (3 + 3 - 2), "land": 3 / (4 + 4 - 3), "hull": 2 / (3 + 3 - 2), "bow_stern": 1 / (2 + 2 - 1)}
    for c, v in expected.items():
        assert out["iou"][c] == pytest.approx(v)
    assert out["miou"] == pytest.approx(np.mean(list(expected.values())))
    assert out["pixel_accuracy"] == pytest.approx(8 / 12)
    assert binary_iou(gold == 3, pred == 3) == pytest.approx(1 / 3)


def test_absent_class_has_no_iou_and_is_left_out_of_the_mean():
    gold = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    out = segmentation_scores(gold, pred, CLASS_NAMES)
    assert out["iou"]["hull"] is None and out["iou"]["bow_stern"] is None
    assert out["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert binary_iou(np.zeros(4, bool), np.zeros(4, bool)) is None
    assert binary_iou(np.zeros(4, bool), np.ones(4, bool)) == 0.0


# ---------------------------------------------------------------- reader
def _write(folder: Path, n: int = 2, size: int = 40, mask_size: int | None = None, ids=(0, 1, 2, 3)) -> tuple[Path, Path]:
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(images / f"tile{i}.png")
        m = size if mask_size is None else mask_size
        Image.fromarray(rng.choice(np.array(ids, dtype=np.uint8), (m, m))).save(masks / f"tile{i}.png")
    return images, masks


def test_reader_cuts_images_into_tiles(tmp_path):
    images, masks = _write(tmp_path, n=2, size=40)
    tiles, names = read_folder(images, masks, 16)
    assert tiles.images.shape == (8, 16, 16, 3) and tiles.masks.shape == (8, 16, 16)   # 2 x (2 x 2), remainder dropped
    assert names[0] == "tile0@0,0" and names[-1] == "tile1@16,16"
    first = np.asarray(Image.open(masks / "tile0.png"))
    np.testing.assert_array_equal(tiles.masks[1], first[0:16, 16:32])


def test_reader_size_mismatch_names_the_file(tmp_path):
    images, masks = _write(tmp_path, n=1, size=32, mask_size=30)
    with pytest.raises(DataError, match=r"masks/tile0\.png: mask is 30x30 pixels but its image .*tile0\.png is 32x32"):
        read_folder(images, masks, 16)


def test_reader_unknown_class_id_names_the_file_and_position(tmp_path):
    images, masks = _write(tmp_path, n=1, size=32)
    m = np.zeros((32, 32), np.uint8)
    m[5, 7] = 9
    Image.fromarray(m).save(masks / "tile0.png")
    with pytest.raises(DataError, match=r"tile0\.png: unknown class id\(s\) \[9\] \(first at row 5, column 7\); expected 0 sea"):
        read_folder(images, masks, 16)


def test_reader_unreadable_file_names_it(tmp_path):
    images, masks = _write(tmp_path, n=2, size=32)
    (images / "tile1.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"images/tile1\.png: unreadable image"):
        read_folder(images, masks, 16)


def test_reader_rgb_mask_and_missing_pairs_are_refused(tmp_path):
    images, masks = _write(tmp_path, n=1, size=32)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(masks / "tile0.png")
    with pytest.raises(DataError, match=r"tile0\.png: mask has mode 'RGB'.*expected a single-channel PNG"):
        read_folder(images, masks, 16)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "tile0.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "extra.png")
    with pytest.raises(DataError, match=r"extra\.png: no mask .*extra\.png"):
        read_folder(images, masks, 16)
    with pytest.raises(DataError, match=r"smaller than one 64x64 tile"):
        (images / "extra.png").unlink()
        read_folder(images, masks, 64)


# ---------------------------------------------------------------- generator
def test_generator_is_seeded_and_knows_its_ground_truth():
    a, b = generate(12, 48, seed=3), generate(12, 48, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, generate(12, 48, seed=4).images)
    ship = np.isin(a.masks, (HULL, BOW_STERN))
    np.testing.assert_array_equal(ship, a.kinds > 0)          # a ship kind exactly on ship pixels
    assert a.ships["inshore"] > a.ships["offshore"] > 0
    assert set(np.unique(a.masks)) == {0, 1, 2, 3}
    # every inshore ship touches land within two pixels; bow/stern pixels sit next to hull pixels
    from scipy import ndimage

    near_land = ndimage.binary_dilation(a.masks == LAND, iterations=2, structure=np.ones((1, 3, 3), bool))
    per_tile = np.zeros((3, 3, 3), bool)
    per_tile[1] = ndimage.generate_binary_structure(2, 1)      # ships never connect across tiles
    labels, n = ndimage.label(a.kinds == 2, structure=per_tile)
    assert n >= a.ships["inshore"] * 0.8
    for i in range(1, n + 1):
        assert near_land[labels == i].any()
    hull_near = ndimage.binary_dilation(a.masks == HULL, iterations=3, structure=np.ones((1, 3, 3), bool))
    assert hull_near[a.masks == BOW_STERN].mean() > 0.95


def test_show_tiles_prefers_inshore_bow_stern():
    masks = np.zeros((4, 8, 8), np.uint8)
    kinds = np.zeros((4, 8, 8), np.uint8)
    masks[1, :2] = BOW_STERN
    kinds[1, :2] = 1                    # offshore: not counted while ship kinds exist
    masks[2, :1] = BOW_STERN
    kinds[2, :1] = 2
    masks[3, :3] = BOW_STERN
    kinds[3, :3] = 2
    assert show_tiles(masks, kinds, 2).tolist() == [2, 3]
    assert show_tiles(masks, np.zeros_like(kinds), 1).tolist() == [3]   # real data: any bow/stern


# ---------------------------------------------------------------- models and the gate
@pytest.mark.parametrize("mechanism", ["none", "se", "cbam_spatial", "scaled_dot", "external"])
def test_deep_fcn_shapes_and_maps(mechanism):
    torch.manual_seed(0)
    opts = {"scaled_dot": {"attn_dim": 8}, "external": {"memory_size": 8}}.get(mechanism, {})
    model = DeepFCN(widths=(8, 8, 16), convs=1, mechanism=mechanism, options=opts)
    logits, extras = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4, 32, 32)
    if mechanism == "cbam_spatial":
        assert extras["spatial_map"].shape == (2, 32, 32) and (extras["spatial_map"] >= 0).all()
    if mechanism == "scaled_dot":   # mean attention received per bottleneck position sums to 1 per tile
        torch.testing.assert_close(extras["spatial_map"].sum((1, 2)), torch.ones(2))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_task_partition_counts_the_shallow_loss_only_inside_the_gate():
    torch.manual_seed(0)
    task = Ships()
    model = TaskPartition(DeepFCN(widths=(8, 8, 8), convs=1), ShallowFCN(width=4, layers=2), threshold=0.3, dilation=1)
    model._class_weights, model._pos_weight = torch.ones(4), torch.tensor(3.0)
    with torch.no_grad():   # a deep net that never calls anything bow/stern: an empty gate
        model.deep.head.bias.copy_(torch.tensor([10.0, 0.0, 0.0, -10.0]))
    batch = {"x": torch.randn(2, 3, 16, 16), "y": torch.full((2, 16, 16), BOW_STERN, dtype=torch.long)}
    loss, n = task.loss(model, batch, torch.device("cpu"))
    loss.backward()
    assert n == 2
    assert all(p.grad is None or not p.grad.any() for p in model.shallow.parameters())
    # a gate that covers the bow/stern: the shallow net learns there, and its prediction is switched on only inside
    model.zero_grad()
    with torch.no_grad():
        model.deep.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    loss, _ = task.loss(model, batch, torch.device("cpu"))
    loss.backward()
    assert any(p.grad is not None and p.grad.any() for p in model.shallow.parameters())
    region = model.gate.region(torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0]]]).unsqueeze(0)[0])
    assert region.tolist() == [[[False, False, False, True, True, True, False]]]


def test_params_refuse_a_mechanism_the_model_cannot_use():
    params = load_params(ROOT / "params.yaml")
    params["tasks"]["ships"]["runs"]["bad"] = {"model": "partition", "attention": "se"}
    with pytest.raises(ParamsError, match=r"tasks\.ships\.runs\.bad\.attention: value 'se' is not allowed for model 'partition'"):
        validate(params)
    params["tasks"]["ships"]["runs"].pop("bad")
    params["tasks"]["ships"]["scales"]["smoke"]["size"] = 36
    with pytest.raises(ParamsError, match=r"tasks\.ships\.scales\.smoke\.size: value 36 .*multiple of 8"):
        validate(params)


def test_partition_run_config_holds_both_nets():
    params = load_params(ROOT / "params.yaml")
    cfg = resolve_run(params, "ships", "task-partition", 0)
    m = params["tasks"]["ships"]["models"]
    assert cfg["model_options"] == {"shallow": m["shallow"], "deep": m["deep"]}


# ---------------------------------------------------------------- claim C11
def _runs(tp, shallow, deep, std=None):
    def r(name, model, attention, value):
        mean = {k: None for k in ("bowstern_iou_inshore", "coarse_bowstern_iou", "fine_bowstern_iou_ungated")}
        mean["bowstern_iou"] = value
        return {"run": name, "model": model, "attention": attention, "mean": mean,
                "bowstern_iou": {"mean": value, "std": std}}
    return [r("task-partition", "partition", "task_partition", tp), r("shallow", "shallow", "none", shallow),
            r("deep", "deep", "none", deep), r("deep-se", "deep", "se", 0.99)]


@pytest.mark.parametrize("tp,shallow,deep,std,verdict", [
    (0.60, 0.40, 0.50, None, "supported"),
    (0.45, 0.40, 0.50, None, "partly supported"),
    (0.30, 0.40, 0.50, None, "not supported"),
    (0.60, 0.40, 0.50, 0.2, "not supported"),       # gaps within the seeds' spread
    (0.03, 0.02, 0.01, None, "inconclusive"),
])
def test_c11_verdict_is_computed_from_the_metrics(tp, shallow, deep, std, verdict):
    claim = claim_c11(_runs(tp, shallow, deep, std))[0]
    assert claim["id"] == "C11" and claim["verdict"] == verdict
    assert f"{tp:.3f}" in claim["evidence"] and "0.990" not in claim["evidence"]   # deep-se is not "the deep net"


def test_c11_names_the_recipe_and_says_plainly_what_partitioning_does_not_beat():
    runs = _runs(0.445, 0.44, 0.30)
    runs[0]["deep_first"] = 3
    claim = claim_c11(runs)[0]
    assert claim["verdict"] == "partly supported"
    assert "deep net trained alone for its first 3 epochs" in claim["evidence"]
    assert "gaps +0.005 and +0.145" in claim["evidence"] and "beats only the deep net, not the shallow one" in claim["evidence"]
    claim = claim_c11(_runs(0.30, 0.44, 0.40))[0]
    assert "trained together from the first step" in claim["evidence"] and "beats neither net alone" in claim["evidence"]


def test_c11_without_the_runs_is_not_measurable():
    assert claim_c11(_runs(0.5, 0.4, 0.3)[1:])[0]["verdict"] == "not measurable"


# ---------------------------------------------------------------- end to end (CLI, real-data folder)
def test_files_source_end_to_end(tmp_path):
    work = copy_pipeline(tmp_path / "repo")
    data = tmp_path / "raw"
    images, masks = _write(data, n=6, size=48)
    import yaml

    p = yaml.safe_load((work / "params.yaml").read_text())
    p["scale"] = "smoke"
    p["tasks"] = {"ships": p["tasks"]["ships"]}
    s = p["tasks"]["ships"]
    s["data"] = {"source": "files", "seed": 0, "files": {"images": str(images), "masks": str(masks),
                                                          "valid_fraction": 0.2, "test_fraction": 0.2}}
    s["scales"]["smoke"] = {"size": 16, "train_size": 1, "valid_size": 1, "test_size": 1, "epochs": 1}
    s["runs"] = {k: s["runs"][k] for k in ("shallow", "task-partition")}
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["attnbench", "prepare", "--task", "ships"], work)
    manifest = json.loads((work / "data/prepared/ships/synthetic/manifest.json").read_text())
    assert manifest["splits"] == {"train": 32, "valid": 11, "test": 11} and not manifest["ship_kinds"]
    for r in ("shallow", "task-partition"):
        run(["attnbench", "train", "--task", "ships", "--run", r, "--seed", "0"], work)
        run(["attnbench", "evaluate", "--task", "ships", "--run", r, "--seed", "0"], work)
    m = json.loads((work / "data/results/ships/synthetic/task-partition/seed0/metrics.json").read_text())
    assert m["bowstern_iou_inshore"] is None and 0 <= m["bowstern_iou"] <= 1 and m["miou"] is not None
    assert len(m["confusion"]) == 4
    # the per-tile counts the findings' paired bootstrap resamples pool to the run's own IoU
    with np.load(work / "data/results/ships/synthetic/task-partition/seed0/items.npz") as items:
        assert len(items["intersection"]) == len(items["union"]) == 11
        assert (items["intersection"] <= items["union"]).all()
        assert items["intersection"].sum() / items["union"].sum() == pytest.approx(m["bowstern_iou"], abs=1e-4)
    (masks / "tile3.png").write_bytes(b"garbage")
    proc = run(["attnbench", "prepare", "--task", "ships"], work, check=False)
    assert proc.returncode != 0 and "tile3.png: unreadable image" in proc.stderr
