"""Transformer decoding time with and without the key/value cache (models.transformer `kv_cache`), side by side.

An untrained model of a params.yaml size decodes the same random source sentences both ways, alternating the two
(A B A B ...) so that a change in the machine's load falls on both; EOS is made impossible, so every output has
exactly --out-len words and the cost does not depend on what an untrained model happens to emit. Prints the
seconds of each repetition, the medians, their ratio, and whether the outputs were equal.

    OMP_NUM_THREADS=1 python benchmarks/kv_cache.py --size multi30k --sentences 200 --beam 5

With --trained RUN_DIR (a trained Transformer's data/results/translation/<dataset>/<run>/seed<S>/, run from the
project folder that holds its prepared data) the run's own model decodes the first --sentences test sentences
as `evaluate` does (Translation._translate), greedy and with beam --beam, with and without the cache.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from attnbench.models.seq2seq import EOS, PAD
from attnbench.models.transformer import TransformerSeq2Seq

SIZES = {   # params.yaml's models.transformer: the synthetic default, and the Multi30k entries with their vocabularies
    "synthetic": dict(vocab=(64, 64), d_model=64, heads=4, enc_layers=2, dec_layers=2, ffn_dim=128),
    "multi30k": dict(vocab=(5928, 7872), d_model=256, heads=8, enc_layers=3, dec_layers=3, ffn_dim=1024),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="multi30k")
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--src-len", type=int, default=15, help="source words per sentence (default: %(default)s)")
    ap.add_argument("--out-len", type=int, default=20, help="output words per sentence (default: %(default)s)")
    ap.add_argument("--beam", type=int, default=1, help="1: greedy (default); K: beam search of width K")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trained", metavar="RUN_DIR", help="a trained Transformer run's folder (see above)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.trained:
        return trained(args)
    spec = dict(SIZES[args.size])
    src_vocab, tgt_vocab = spec.pop("vocab")
    torch.manual_seed(0)
    model = TransformerSeq2Seq(src_vocab, tgt_vocab, dropout=0.1, **spec).eval()
    with torch.no_grad():
        model.out.bias[EOS] = -1e4   # never ends: exactly out_len words each
    src = torch.randint(4, src_vocab, (args.sentences, args.src_len))
    src_len = torch.full((args.sentences,), args.src_len)

    def decode(cache: bool):
        if args.beam == 1:
            return model.greedy(src, src_len, args.out_len, cache=cache)
        return model.beam_search(src, src_len, args.beam, args.out_len, alpha=0.6, cache=cache)

    seconds = {False: [], True: []}
    outputs = {}
    for _ in range(args.repeats):
        for cache in (False, True):
            t0 = time.perf_counter()
            outputs[cache] = decode(cache)
            seconds[cache].append(time.perf_counter() - t0)
    equal = torch.equal(outputs[False][0], outputs[True][0]) and not (outputs[True][0] == PAD).any()
    plain, cached = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"{datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()} torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"size {args.size}, {args.sentences} sentences of {args.src_len} source words, outputs of {args.out_len} words, "
          f"{'greedy' if args.beam == 1 else f'beam {args.beam}'}, one batch, {args.repeats} repeats A/B")
    print(f"  full recomputation: {', '.join(f'{s:.2f}' for s in seconds[False])} s (median {plain:.2f})")
    print(f"  key/value cache:    {', '.join(f'{s:.2f}' for s in seconds[True])} s (median {cached:.2f})")
    print(f"  speed-up x{plain / cached:.1f}; outputs equal: {equal}")


def trained(args) -> None:
    from pathlib import Path

    from attnbench import paths, tasks
    from attnbench.training import load_checkpoint

    ckpt = load_checkpoint(Path(args.trained) / "model.pt")
    cfg = ckpt["config"]
    task = tasks.get("translation")
    data = task.load(paths.prepared_dir("translation", cfg["dataset"]), cfg)
    data = data.with_test(data.pairs["test"][:args.sentences])
    model = task.build_model(cfg, data)
    model.load_state_dict(ckpt["model"])
    model.eval()
    cpu = torch.device("cpu")
    print(f"{datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()} torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); {args.trained}: {len(data.pairs['test'])} test sentences, "
          f"{args.repeats} repeats A/B")
    for beam in (None, dict(task.beam_settings(cfg), beam_size=args.beam)):
        seconds, outputs = {False: [], True: []}, {}
        for _ in range(args.repeats):
            for cache in (False, True):
                model.kv_cache = cache
                t0 = time.perf_counter()
                outputs[cache] = task._translate(model, data, "test", cfg, cpu, beam=beam)
                seconds[cache].append(time.perf_counter() - t0)
        plain, cached = statistics.median(seconds[False]), statistics.median(seconds[True])
        print(f"  {'greedy' if beam is None else f'beam {args.beam}'}: full recomputation "
              f"{', '.join(f'{s:.2f}' for s in seconds[False])} s, cache {', '.join(f'{s:.2f}' for s in seconds[True])} s; "
              f"speed-up x{plain / cached:.1f}; translations equal: {outputs[False] == outputs[True]}")


if __name__ == "__main__":
    main()
