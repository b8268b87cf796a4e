"""Captioning: Show and Tell (no attention) against Show, Attend and Tell (soft and hard attention).

Data: synthetic 64x64 scenes (data.py) of one to three objects with reference captions from a
grammar and every object's mask, or a real folder of images with a captions JSON (data.py's reader). Runs:
a small CNN encoder and an LSTM decoder (models/captioner.py) with no attention (image vector as the
initial state), soft attention (deterministic; run option `doubly_stochastic`: the weight λ of Xu et
al.'s regulariser, 0 by default because on these scenes it keeps the attention off the objects) or hard
attention (a sampled location, REINFORCE with a moving-average baseline and an entropy bonus; run
option `semi_sampling`: the share of captions that sample, the others use the expected context).
Run option `init_state: zeros` (attention runs) starts the decoder from a zero state instead of the
mean annotation vector, so the image reaches it only through attention.
Decoding: greedy (validation) and beam search (test; beam size in params). Metrics: sacreBLEU
BLEU-1..4 against all references (signature kept), and attention localisation: the share of
generated shape words whose attention peak (the most-attended grid cell at the step that emitted the
word: alpha_t is computed from h_{t-1} and gives the context from which word t is predicted) overlaps
the mask of the object the word names (a cell overlaps when any of its pixels is in the mask).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ... import io as aio
from ...errors import ParamsError
from ...metrics import reference_streams
from ...models.captioner import BOS, EOS, PAD, UNK, Captioner, decoder_kind
from .. import register
from ..base import Task
from ..common import check_mechanism, check_mechanism_options, to_device
from . import data as scenes

SPLITS = ("train", "valid", "test")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
MODEL_RUN_OPTIONS = ("init_state",)     # run options given to the Captioner, not to the attention mechanism
# the run options of each decoder kind (decoder_kind) that go to the loss or the Captioner, not to the mechanism
LOSS_OPTIONS = {"none": (), "hard": ("reinforce", "entropy", "baseline_decay", "semi_sampling") + MODEL_RUN_OPTIONS,
                "soft": ("doubly_stochastic",) + MODEL_RUN_OPTIONS}
BLEU_ORDERS = (1, 2, 3, 4)
BEAM_BATCH = 128                        # test images beam-searched together (beam_size decoder rows each)


kind_of = decoder_kind   # "none" | "soft" | "hard", by the mechanism's capabilities


def split_options(attention: str, options: dict) -> tuple[dict, dict]:
    """(the mechanism's own options, the loss options of the run's kind)."""
    names = LOSS_OPTIONS[kind_of(attention)]
    return ({k: v for k, v in options.items() if k not in names}, {k: v for k, v in options.items() if k in names})


def bleu_scores(hypotheses: list[str], references: list[list[str]]) -> tuple[dict[str, float], str]:
    """sacreBLEU corpus BLEU-1..4 (BLEU-n: geometric mean of the 1..n-gram precisions, `max_ngram_order=n`)
    against every reference of each image, and the BLEU-4 signature."""
    from sacrebleu.metrics import BLEU

    streams = reference_streams(references)
    out, signature = {}, ""
    for n in BLEU_ORDERS:
        bleu = BLEU(max_ngram_order=n)
        out[f"bleu{n}"] = round(bleu.corpus_score(list(hypotheses), streams).score, 4)
        signature = str(bleu.get_signature())
    return out, signature


class Data:
    """Prepared images, tokenised captions, vocabulary and (synthetic) objects and test masks."""

    def __init__(self, prepared: Path) -> None:
        prepared = Path(prepared)
        vocab = aio.read_json(prepared / "vocab.json")
        self.itos: list[str] = vocab["words"]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        captions = aio.read_json(prepared / "captions.json")
        self.captions: dict[str, list[list[str]]] = captions["captions"]
        self.names: dict[str, list[str]] = captions["names"]
        self.objects: dict[str, list[list[dict]]] | None = captions.get("objects")
        self.images = {s: np.load(prepared / f"images_{s}.npy") for s in SPLITS}
        masks = prepared / "masks_test.npz"
        self.masks = None
        if masks.is_file():
            with np.load(masks) as z:
                self.masks = np.unpackbits(z["bits"], axis=-1)[..., : int(z["size"])].astype(bool)   # [N, K, H, W]
        self.ids = {s: [[self.encode(c) for c in caps] for caps in self.captions[s]] for s in SPLITS}

    def encode(self, caption: str) -> list[int]:
        return [self.stoi.get(w, UNK) for w in caption.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.itos[i] for i in ids)

    def batch(self, split: str, index: list[int], picks: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
        """The images and their reference captions (all, or those `picks` names per image), one row per
        caption, rows sorted by length (longest first) so the decoder can drop finished rows."""
        rows = [(b, self.ids[split][i][k]) for b, i in enumerate(index)
                for k in (range(len(self.ids[split][i])) if picks is None else picks[b])]
        rows.sort(key=lambda r: -len(r[1]))
        T = max(len(ids) for _, ids in rows) + 1
        inputs = torch.full((len(rows), T), PAD, dtype=torch.long)
        targets = torch.full((len(rows), T), PAD, dtype=torch.long)
        for r, (_, ids) in enumerate(rows):
            inputs[r, : len(ids) + 1] = torch.tensor([BOS] + ids)
            targets[r, : len(ids) + 1] = torch.tensor(ids + [EOS])
        return {"images": torch.from_numpy(self.images[split][index]), "inputs": inputs, "targets": targets,
                "image_index": torch.tensor([b for b, _ in rows]), "lengths": torch.tensor([len(ids) + 1 for _, ids in rows])}


class Captioning(Task):
    name = "captioning"
    valid_metric = "valid_bleu4"
    headline = "bleu4"
    metric_columns = ("bleu4", "bleu1", "bleu2", "bleu3", "localisation", "localisation_chance", "bleu4_greedy",
                      "localisation_colour_word", "attention_entropy")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        where = f"{origin}: tasks.captioning"
        for run, spec in section["runs"].items():
            attention, options = spec["attention"], spec.get("options", {})
            check_mechanism(f"{where}.runs.{run}", spec["model"], attention, Captioner.attention_needs)
            own, _ = split_options(attention, options)
            if kind_of(attention) == "none" and own:
                raise ParamsError(f"{where}.runs.{run}.options.{sorted(own)[0]}: unknown option for attention "
                                  f"{attention!r}; expected no options")
            if kind_of(attention) != "none":
                check_mechanism_options(f"{where}.runs.{run}", attention, own)
        models = section["models"]
        for name, m in models.items():
            pools = m.get("pools", len(m["channels"]))
            if pools > len(m["channels"]):
                raise ParamsError(f"{where}.models.{name}.pools: value {pools} exceeds the {len(m['channels'])} stages of "
                                  "channels; expected at most one pooling per stage")
            if m["image_size"] // 2 ** pools < 2:
                raise ParamsError(f"{where}.models.{name}.channels: {pools} pooling stages are too many for image_size "
                                  f"{m['image_size']}; expected image_size / 2^stages >= 2 (an attention grid of at least 2x2)")
        data = section["data"]
        if data["source"] == "folder":
            folder = data["folder"]
            if not Path(folder["images"]).is_dir():
                raise ParamsError(f"{where}.data.folder.images: folder {folder['images']!r} does not exist; expected the "
                                  "folder holding the images named in the captions file")
            if not Path(folder["captions"]).is_file():
                raise ParamsError(f"{where}.data.folder.captions: file {folder['captions']!r} does not exist; expected a "
                                  "JSON file mapping image names to lists of captions")

    def _image_size(self, section: dict) -> int:
        sizes = {m["image_size"] for m in section["models"].values()}
        if len(sizes) != 1:
            raise ParamsError(f"tasks.captioning.models: image_size differs between models ({sorted(sizes)}); expected one "
                              "size (the prepared images are shared by every run)")
        return sizes.pop()

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["captioning"]
        size, data = section["scales"][params["scale"]], section["data"]
        image_size = self._image_size(section)
        seed = data.get("seed", 2015)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        captions, names, images, objects = {}, {}, {}, None
        masks = None
        if data["source"] == "synthetic":
            objects = {}
            counts = {s: size[f"{s}_size"] for s in SPLITS}
            for k, split in enumerate(SPLITS):
                made = scenes.generate(counts[split], seed=seed * 10 + k, size=image_size,
                                       max_objects=data.get("max_objects", 3))
                images[split] = np.stack([s.image for s in made])
                captions[split] = [[" ".join(scenes.tokenize(c)) for c in s.captions] for s in made]
                names[split] = [f"{split}-{i:05d}" for i in range(len(made))]
                objects[split] = [[{"shape": o.shape, "colour": o.colour, "size": o.size, "cx": o.cx, "cy": o.cy}
                                   for o in s.objects] for s in made]
                if split == "test":
                    K = data.get("max_objects", 3)
                    masks = np.zeros((len(made), K, image_size, image_size), dtype=bool)
                    for i, s in enumerate(made):
                        for j, o in enumerate(s.objects):
                            masks[i, j] = o.mask
        else:
            folder = data["folder"]
            all_names, arrays, caps = scenes.read_folder(folder["images"], folder["captions"], image_size)
            order = np.random.default_rng(seed).permutation(len(all_names))
            split_cfg = folder.get("split", {})
            n_test = max(1, round(split_cfg.get("test", 0.1) * len(order)))
            n_valid = max(1, round(split_cfg.get("valid", 0.1) * len(order)))
            if n_test + n_valid >= len(order):
                from ...errors import DataError

                raise DataError(f"{folder['captions']}: {len(order)} images are too few to split into train, valid "
                                f"({n_valid}) and test ({n_test}); expected at least {n_test + n_valid + 1}")
            parts = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}
            for split, idx in parts.items():
                idx = sorted(int(i) for i in idx)
                images[split] = arrays[idx]
                names[split] = [all_names[i] for i in idx]
                captions[split] = [[" ".join(scenes.tokenize(c)[: data.get("max_words", 30)]) for c in caps[i]] for i in idx]
        counts = Counter(w for caps in captions["train"] for c in caps for w in c.split())
        words = list(SPECIALS) + sorted((w for w in counts if counts[w] >= data.get("min_count", 1)),
                                        key=lambda w: (-counts[w], w))[: data.get("max_vocab", 10000)]
        for split in SPLITS:
            np.save(out_dir / f"images_{split}.npy", images[split])
        if masks is not None:
            with aio.atomic_path(out_dir / "masks_test.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, bits=np.packbits(masks, axis=-1), size=np.array(image_size))
        blob = {"captions": captions, "names": names}
        if objects is not None:
            blob["objects"] = objects
        aio.write_json(out_dir / "captions.json", blob)
        aio.write_json(out_dir / "vocab.json", {"words": words})
        lengths = [len(c.split()) for caps in captions["train"] for c in caps]
        manifest = {
            "task": "captioning", "source": data["source"], "scale": params["scale"], "image_size": image_size,
            "images": {s: int(len(images[s])) for s in SPLITS}, "vocab": len(words),
            "references_per_image": round(float(np.mean([len(c) for c in captions["test"]])), 2),
            "caption_words": {"mean": round(float(np.mean(lengths)), 2), "max": int(max(lengths))},
        }
        if objects is not None:
            manifest["objects_per_image"] = {s: dict(sorted(Counter(len(o) for o in objects[s]).items())) for s in SPLITS}
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared))

    # ---- model and training -----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        own, loss_options = split_options(cfg["attention"], cfg["attention_options"])
        extra = {k: loss_options[k] for k in ("semi_sampling",) + MODEL_RUN_OPTIONS if k in loss_options}
        model = Captioner(len(data.itos), attention=cfg["attention"], attention_options=own, **cfg["model_options"], **extra)
        model.loss_options = loss_options     # read by `loss`: regulariser and REINFORCE weights of the run
        return model

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        """Shuffled images; per image `captions_per_image` of its references, drawn afresh every epoch."""
        size, per_image = cfg["train"]["batch_size"], cfg["train"].get("captions_per_image", 0)
        perm = torch.randperm(len(data.ids["train"]), generator=generator).tolist()
        for start in range(0, len(perm), size):
            index = perm[start:start + size]
            picks = None
            if per_image:
                picks = [torch.randperm(len(data.ids["train"][i]), generator=generator)[:per_image].tolist() for i in index]
            yield data.batch("train", index, picks)

    def loss(self, model: Captioner, batch: dict, device: torch.device):
        b = to_device(batch, device)
        logits, alphas, logps, ents = model(b["images"], b["inputs"], b["image_index"], b["lengths"])
        targets = b["targets"]
        mask = (targets != PAD).float()
        nll_tok = nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=PAD, reduction="none")
        loss = (nll_tok * mask).sum() / mask.sum()
        options = getattr(model, "loss_options", None) or {}
        if model.kind == "soft":
            lam = float(options.get("doubly_stochastic", 0.0))
            if lam > 0:
                # Xu et al. eq. 14: lambda * sum_i (1 - sum_t alpha_ti)^2, averaged here over locations and captions
                coverage = (alphas.float() * mask.unsqueeze(-1)).sum(1)
                loss = loss + lam * ((1.0 - coverage) ** 2).mean()
        elif model.kind == "hard":
            # REINFORCE (Xu et al. eq. 12) with the caption's mean per-word log-likelihood as the reward, a moving-average
            # baseline and the mean log-probability of its sampled locations; the entropy bonus likewise per word.
            # (Measured on the default grid: the caption's summed log-likelihood as the reward, the paper's literal
            # form, made training unstable here — BLEU-4 19.5 against 36.0 — with the location policy no sharper.)
            lengths = mask.sum(1)
            reward = -((nll_tok * mask).sum(1) / lengths).detach()
            if model.training:
                with torch.no_grad():
                    decay = float(options.get("baseline_decay", 0.9))
                    # the first batch sets the baseline, later ones move it; chosen on the device, not read
                    mean = reward.mean()
                    model.baseline.copy_(torch.where(model.baseline_set, decay * model.baseline + (1 - decay) * mean, mean))
                    model.baseline_set.fill_(True)
            advantage = reward - model.baseline
            policy = -(advantage * (logps.float() * mask).sum(1) / lengths).mean()
            entropy = ((ents.float() * mask).sum(1) / lengths).mean()
            loss = loss + float(options.get("reinforce", 1.0)) * policy - float(options.get("entropy", 0.01)) * entropy
        return loss, mask.sum()   # words in the batch, left on the device (the loop reads it once an epoch)

    # ---- evaluation -------------------------------------------------------------------
    def greedy_captions(self, model: Captioner, data: Data, split: str, device, max_len: int, batch_size: int = 128):
        hyps, alphas = [], []
        images = data.images[split]
        for start in range(0, len(images), batch_size):
            ids, al = model.greedy(torch.from_numpy(images[start:start + batch_size]).to(device), max_len)
            hyps += [data.decode(i) for i in ids]
            alphas += [None if a is None else a.float().cpu().numpy() for a in al]
        return hyps, alphas

    @torch.no_grad()
    def validate(self, model, data: Data, cfg: dict, device) -> float:
        hyps, _ = self.greedy_captions(model, data, "valid", device, cfg["eval"]["max_len"])
        return bleu_scores(hyps, data.captions["valid"])[0]["bleu4"] / 100.0

    @torch.no_grad()
    def evaluate(self, model: Captioner, data: Data, cfg: dict, device, out_dir: Path) -> dict:
        from tqdm import tqdm

        ev = cfg["eval"]
        refs = data.captions["test"]
        greedy, greedy_alphas = self.greedy_captions(model, data, "test", device, ev["max_len"])
        hyps, alphas, logp = [], [], []
        images = data.images["test"]
        with tqdm(total=len(images), desc=f"{cfg['run']} beam search", unit="image", leave=False,
                  disable=not __import__("sys").stderr.isatty()) as bar:
            for start in range(0, len(images), BEAM_BATCH):
                chunk = torch.from_numpy(images[start:start + BEAM_BATCH]).to(device)
                for ids, al, s in model.beam_search(chunk, ev["beam_size"], ev["max_len"]):
                    hyps.append(data.decode(ids))
                    alphas.append(None if al is None else al.float().numpy())
                    logp.append(s)
                bar.update(len(chunk))
        scores, signature = bleu_scores(hyps, refs)
        greedy_scores, _ = bleu_scores(greedy, refs)
        metrics: dict = {**scores, "bleu4_greedy": greedy_scores["bleu4"], "bleu_signature": signature,
                         "beam_size": ev["beam_size"], "test_images": len(images),
                         "attention_kind": model.kind}
        loc = localisation(hyps, alphas, data, model.grid) if model.kind != "none" else None
        if loc is not None:
            metrics.update(loc["summary"])
        else:
            metrics.update({"localisation": None, "localisation_chance": None, "localisation_colour_word": None,
                            "attention_entropy": None, "shape_words_scored": 0})
        if data.objects is not None:
            n_obj = [len(o) for o in data.objects["test"]]
            metrics["bleu4_by_objects"] = {
                str(k): bleu_scores([h for h, n in zip(hyps, n_obj) if n == k],
                                    [r for r, n in zip(refs, n_obj) if n == k])[0]["bleu4"]
                for k in sorted(set(n_obj))}
        metrics["exact_match"] = round(float(np.mean([h in r for h, r in zip(hyps, refs)])), 4)
        self._export(out_dir, data, model, hyps, greedy, alphas, logp, loc, ev["show_images"])
        return metrics

    @staticmethod
    def show_indices(data: Data, k: int) -> list[int]:
        """The same k test images for every run: with objects, one of each count first, then the most objects."""
        n = len(data.images["test"])
        if data.objects is None:
            return list(range(min(k, n)))
        counts = [len(o) for o in data.objects["test"]]
        order: list[int] = []
        for want in (2, 3, 1):
            order += [i for i in range(n) if counts[i] == want][:1]
        order += [i for i in sorted(range(n), key=lambda i: -counts[i]) if i not in order]
        return order[:k]

    def _export(self, out_dir: Path, data: Data, model: Captioner, hyps, greedy, alphas, logp, loc, k: int) -> None:
        arrays: dict[str, np.ndarray] = {"grid": np.array(model.grid)}
        if loc is not None:
            arrays.update({"loc_hit": np.array(loc["hits"], dtype=np.int8),
                           "loc_image": np.array(loc["images"], dtype=np.int64),
                           "loc_chance": np.array(loc["chance"], dtype=np.float32)})
        for n, i in enumerate(self.show_indices(data, k)):
            arrays[f"image_index_{n}"] = np.array(i)
            arrays[f"image_{n}"] = data.images["test"][i]
            arrays[f"caption_{n}"] = np.array(hyps[i].split() or [""])
            arrays[f"references_{n}"] = np.array(data.captions["test"][i])
            if alphas[i] is not None:
                arrays[f"alpha_{n}"] = alphas[i].reshape(-1, model.grid, model.grid).astype(np.float32)
            if data.masks is not None and data.objects is not None:
                objs = data.objects["test"][i]
                arrays[f"masks_{n}"] = data.masks[i, : len(objs)]
                arrays[f"objects_{n}"] = np.array([f"{o['size']} {o['colour']} {o['shape']}" for o in objs])
        with aio.atomic_path(out_dir / "attention.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        per_image = loc["per_image"] if loc is not None else {}
        lines = []
        for i, (h, g) in enumerate(zip(hyps, greedy)):
            row = {"image": i, "name": data.names["test"][i], "caption": h, "greedy": g, "log_prob": round(logp[i], 4),
                   "references": data.captions["test"][i], "exact": h in data.captions["test"][i]}
            if data.objects is not None:
                row["objects"] = len(data.objects["test"][i])
            if i in per_image:
                row["shape_words"], row["shape_hits"] = per_image[i]
            lines.append(json.dumps(row, ensure_ascii=False))
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")


def localisation(hyps: list[str], alphas: list[np.ndarray | None], data: Data, grid: int) -> dict | None:
    """For each generated shape word whose object can be identified (scenes.referent): whether the
    most-attended cell at the step that emitted it overlaps that object's mask. Also the chance rate
    (the share of cells overlapping the mask: what a uniformly random peak would score)."""
    if data.masks is None or data.objects is None:
        return None
    size = data.masks.shape[-1]
    cell = size // grid
    hits, images, chance, per_image = [], [], [], {}
    colour_hits, entropy = [], []
    for i, (h, a) in enumerate(zip(hyps, alphas)):
        if a is None:
            continue
        tokens, objs = h.split(), data.objects["test"][i]
        n, m = 0, 0
        for t, w in enumerate(tokens):
            if w not in scenes.SHAPES or t >= len(a):
                continue
            j = scenes.referent(tokens, t, objs)
            if j is None:
                continue
            # cells a mask touches: max-pool of the mask over the grid cells
            covered = data.masks[i, j, : grid * cell, : grid * cell].reshape(grid, cell, grid, cell).any(axis=(1, 3)).reshape(-1)
            hit = bool(covered[int(np.argmax(a[t]))])
            hits.append(hit)
            images.append(i)
            chance.append(float(covered.mean()))
            entropy.append(float(-(a[t] * np.log(np.clip(a[t], 1e-12, None))).sum() / np.log(a.shape[-1])))
            if t > 0 and tokens[t - 1] in scenes.COLOURS:     # the step that emitted the object's colour word
                colour_hits.append(bool(covered[int(np.argmax(a[t - 1]))]))
            n, m = n + 1, m + hit
        if n:
            per_image[i] = (n, m)
    summary = {"localisation": round(float(np.mean(hits)), 4) if hits else None,
               "localisation_chance": round(float(np.mean(chance)), 4) if chance else None,
               "localisation_colour_word": round(float(np.mean(colour_hits)), 4) if colour_hits else None,
               "attention_entropy": round(float(np.mean(entropy)), 4) if entropy else None,
               "shape_words_scored": len(hits)}
    return {"summary": summary, "hits": hits, "images": images, "chance": chance, "per_image": per_image}


register(Captioning())
