"""Using a trained run (issue 32): `attnbench translate` (arguments, --input, standard input; --attention PNGs)
and `attnbench score` (other test files, the run's own preprocessing and signature, its own results folder),
with the errors a user meets: no checkpoint, unknown run or dataset, prepared data that no longer match."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from attnbench import cli

from .conftest import write_params

EN = ["A man rides a red bike.", "Two dogs play in the park!", "The girl is reading a book.",
      "A woman sings on stage.", "Children run on the beach.", "An old man drinks coffee."]
FR = ["Un homme fait du vélo rouge.", "Deux chiens jouent dans le parc !", "La fille lit un livre.",
      "Une femme chante sur scène.", "Des enfants courent sur la plage.", "Un vieil homme boit du café."]
RUN = ["--task", "translation", "--run", "rnn-general", "--seed", "0"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, request):
    """A tiny raw-text En-Fr corpus (Moses tokenisation, lowercased) with two runs trained and evaluated."""
    from .conftest import shrink, load_params

    root = tmp_path_factory.mktemp("translate")
    for split, n in (("train", 8), ("valid", 2), ("test", 2)):
        (root / f"{split}.en").write_text("\n".join(EN * n) + "\n")
        (root / f"{split}.fr").write_text("\n".join(FR * n) + "\n")
    params = shrink(load_params())
    t = params["tasks"]["translation"]
    t["data"] = {"source": "files", "tokenize": "moses", "lowercase": True, "lang": {"source": "en", "target": "fr"},
                 "files": {s: {"source": f"{s}.en", "target": f"{s}.fr"} for s in ("train", "valid", "test")}}
    t["scales"]["smoke"]["epochs"] = 3
    t["eval"]["beam_size"] = 2
    t["runs"] = {name: t["runs"][name] for name in ("rnn-general", "transformer")}
    params["tasks"] = {"translation": t}
    write_params(root / "params.yaml", params)
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    request.addfinalizer(mp.undo)
    assert cli.main(["-q", "prepare", "--task", "translation"]) == 0
    for run in ("rnn-general", "transformer"):
        for step in ("train", "evaluate"):
            assert cli.main(["-q", step, "--task", "translation", "--run", run, "--seed", "0"]) == 0
    return root


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("run", ["rnn-general", "transformer"])
def test_translate_arguments_one_line_each_and_a_png_per_sentence(project, run, capsys):
    sentences = ["A man rides a red bike.", "Two dogs play in the park!", "A zebra sings."]
    argv = ["-q", "translate", "--task", "translation", "--run", run, "--seed", "0", *sentences,
            "--attention", str(project / f"maps-{run}")]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line == line.lower() for line in lines)   # lowercased data: lowercase output
    for n in (1, 2, 3):
        width, height = _png_size(project / f"maps-{run}" / f"sentence-{n}.png")
        assert width > 100 and height > 100


def test_translate_reads_a_file_or_standard_input_and_matches_the_arguments(project, capsys, monkeypatch):
    assert cli.main(["-q", "translate", *RUN, *EN[:3]]) == 0
    from_args = capsys.readouterr().out
    (project / "in.txt").write_text("\n".join(EN[:3]) + "\n")
    assert cli.main(["-q", "translate", *RUN, "--input", "in.txt", "--attention", "one.png"]) == 0
    assert capsys.readouterr().out == from_args
    assert all((project / f"one-{n}.png").is_file() for n in (1, 2, 3))
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(EN[:3]) + "\n"))
    assert cli.main(["-q", "translate", *RUN, "--beam", "1"]) == 0
    assert capsys.readouterr().out == from_args
    assert cli.main(["-q", "translate", *RUN, EN[0], "--attention", "single.png"]) == 0
    assert (project / "single.png").is_file()


def test_translate_output_is_what_evaluation_scored(project, capsys):
    """Greedy and beam translations of the test sentences are the detokenised hypotheses of samples.jsonl."""
    samples = [json.loads(line) for line in
               (project / "data/results/translation/synthetic/rnn-general/seed0/samples.jsonl").read_text().splitlines()]
    sources = (project / "test.en").read_text().splitlines()[:4]
    assert cli.main(["-q", "translate", *RUN, *sources]) == 0
    assert capsys.readouterr().out.splitlines() == [s["hyp_detok"] for s in samples[:4]]
    assert cli.main(["-q", "translate", *RUN, "--beam", "2", *sources]) == 0
    from attnbench.tasks.translation import preprocess
    detok = preprocess.detokenizer("moses", "fr")
    assert capsys.readouterr().out.splitlines() == [detok(s["hyp_beam"].split()) for s in samples[:4]]


def test_score_on_the_runs_own_test_files_gives_its_own_metrics(project, capsys):
    own = project / "data/results/translation/synthetic/rnn-general/seed0"
    before = {p.name: p.read_bytes() for p in own.iterdir()}
    assert cli.main(["-q", "score", *RUN, "--source", "test.en", "--target", "test.fr"]) == 0
    assert "data/scores/translation/synthetic/rnn-general/seed0/test/metrics.json" in capsys.readouterr().out
    scored = json.loads((project / "data/scores/translation/synthetic/rnn-general/seed0/test/metrics.json").read_text())
    metrics = json.loads((own / "metrics.json").read_text())
    for key in ("bleu", "bleu_signature", "chrf", "bleu_beam", "bleu_tok", "exact_match", "test_sentences"):
        assert scored[key] == metrics[key], key
    assert scored["scored_files"] == {"source": "test.en", "target": "test.fr"}
    assert {p.name: p.read_bytes() for p in own.iterdir()} == before, "the run's own outputs are untouched"
    (project / "other.tsv").write_text("".join(f"{e}\t{f}\n" for e, f in zip(EN[:3], FR[:3])))
    assert cli.main(["-q", "score", *RUN, "--tsv", "other.tsv", "--name", "other-2017"]) == 0
    other = json.loads((project / "data/scores/translation/synthetic/rnn-general/seed0/other-2017/metrics.json").read_text())
    assert other["test_sentences"] == 3 and other["bleu_signature"] == metrics["bleu_signature"]


def test_clear_errors(project, capsys):
    assert cli.main(["translate", "--task", "translation", "--run", "rnn-nope", "--seed", "0", "x"]) == 2
    err = capsys.readouterr().err
    assert "rnn-nope" in err and "rnn-general, transformer" in err
    assert cli.main(["translate", "--task", "translation", "--dataset", "multi31k", *RUN[2:], "x"]) == 2
    err = capsys.readouterr().err
    assert "multi31k" in err and "multi30k-en-fr" in err
    assert cli.main(["translate", "--task", "translation", "--run", "rnn-general", "--seed", "7", "x"]) == 2
    assert "--seed 7: not a seed of the grid" in capsys.readouterr().err   # the CLI's rule for every run step
    assert cli.main(["--set", "seeds=[0, 7]", "translate", "--task", "translation", "--run", "rnn-general", "--seed", "7",
                     "x"]) == 1
    err = capsys.readouterr().err
    assert "not trained" in err and "attnbench train --task translation --dataset synthetic --run rnn-general --seed 7" in err
    assert cli.main(["translate", "--task", "intent", *RUN[2:], "x"]) == 2
    assert "expected: translation" in capsys.readouterr().err
    assert cli.main(["score", *RUN, "--source", "test.en"]) == 2
    assert "--target" in capsys.readouterr().err


def test_a_mismatched_vocabulary_or_preprocessing_is_refused(project, capsys):
    vocab_path = project / "data/prepared/translation/synthetic/vocab.json"
    manifest_path = vocab_path.with_name("manifest.json")
    vocab, manifest = vocab_path.read_text(), manifest_path.read_text()
    try:
        changed = json.loads(vocab)
        changed["target"].append("nouveau")
        vocab_path.write_text(json.dumps(changed))
        for step in (["translate", *RUN, "x"], ["score", *RUN, "--source", "test.en", "--target", "test.fr"]):
            assert cli.main(step) == 1
            err = capsys.readouterr().err
            assert "target vocabulary has" in err and "was trained with" in err and "attnbench prepare" in err
        vocab_path.write_text(vocab)
        for edit, expected in ((lambda m: m["preprocessing"].update(lowercase=False), "preprocessing"),
                               (lambda m: m.update(scale="default"), "scale default"),
                               (lambda m: m["vocab"]["source"].update(min_freq=3), "source vocabulary was cut")):
            changed = json.loads(manifest)
            edit(changed)
            manifest_path.write_text(json.dumps(changed))
            assert cli.main(["translate", *RUN, "x"]) == 1
            assert expected in capsys.readouterr().err
    finally:
        vocab_path.write_text(vocab)
        manifest_path.write_text(manifest)


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["translate", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "attnbench translate --task translation --dataset" in out and "--attention" in out
