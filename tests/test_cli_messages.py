"""What the CLI says when a user gets something wrong: one test per message. Each names what to do next
(the command to run first, the grid's values, the close matches, the file and line) in one line."""
from __future__ import annotations

import argparse

import pytest

from attnbench import cli, datasets
from attnbench.config import ParamsError, read_yaml
from attnbench.datasets import Dataset, RemoteFile
from attnbench.errors import DataError
from attnbench.tasks.captioning.data import read_captions_json
from attnbench.tasks.common import read_utf8_lines
from attnbench.tasks.intent.data import read_csv as read_intent_csv
from attnbench.tasks.recsys.data import read_libsvm

from .conftest import write_params

LATIN1 = "text,label\nhello,greet\ncafé,greet\n".encode("latin-1")   # é is 0xe9, at byte offset 26 (line 3)


def _error(capsys, *argv) -> tuple[int, str]:
    code = cli.main(["-q", *argv])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnbench: error: "), err
    return code, err


@pytest.fixture
def grid(tiny_params, tmp_path, monkeypatch):
    """A params file of the tiny translation grid (seeds 0 and 1) in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    tiny_params["seeds"] = [0, 1]
    return write_params(tmp_path / "tiny.yaml", tiny_params)


def test_train_before_prepare_names_the_prepare_command(grid, capsys):
    code, err = _error(capsys, "--params", str(grid), "--scale", "smoke", "train", "--task", "translation",
                       "--run", "rnn-dot", "--seed", "0")
    assert code == 1 and "Errno" not in err
    assert "translation/synthetic is not prepared yet" in err
    assert f"run `attnbench --params {grid} --scale smoke prepare --task translation --dataset synthetic` first" in err


def test_evaluate_before_train_names_the_train_command(grid, capsys):
    assert cli.main(["-q", "--params", str(grid), "prepare", "--task", "translation"]) == 0
    code, err = _error(capsys, "--params", str(grid), "evaluate", "--task", "translation", "--run", "rnn-dot",
                       "--seed", "1")
    assert code == 1 and "rnn-dot seed 1 is not trained yet" in err
    assert f"run `attnbench --params {grid} train --task translation --dataset synthetic --run rnn-dot --seed 1` first" in err


def test_a_seed_outside_the_grid_is_refused_with_the_grids_seeds(grid, capsys, tmp_path):
    code, err = _error(capsys, "--params", str(grid), "train", "--task", "translation", "--run", "rnn-dot",
                       "--seed", "7")
    assert code == 2 and f"--seed 7: not a seed of the grid; {grid}'s seeds are: 0, 1" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()


def test_a_run_outside_the_grid_is_refused_with_the_grids_runs(grid, capsys):
    code, err = _error(capsys, "--params", str(grid), "train", "--task", "translation", "--run", "rnn-nope",
                       "--seed", "0")
    assert code == 2 and "--run rnn-nope: not a run of the grid" in err and "rnn-dot" in err


def test_an_unknown_task_is_named_without_stray_quotes(grid, capsys):
    code, err = _error(capsys, "--params", str(grid), "train", "--task", "transltion", "--run", "rnn-dot",
                       "--seed", "0")
    assert code == 2 and '"' not in err
    assert err.startswith(f"attnbench: error: --task transltion: {grid} has no task named 'transltion'; "
                          "expected one of: translation, ")


def test_a_key_error_prints_its_message_not_its_repr(monkeypatch, capsys):
    from attnbench import tasks

    def runs(args):
        return tasks.get("transltion")   # what a task name no module registers raises: KeyError(message)

    monkeypatch.setattr(cli, "cmd_runs", runs)
    code, err = _error(capsys, "runs")
    assert code == 1 and err.startswith("attnbench: error: unknown task 'transltion'; expected one of: ")


def test_set_with_a_missing_key_names_the_key_the_close_matches_and_the_file(grid, capsys):
    code, err = _error(capsys, "--params", str(grid), "--set", "tasks.translation.runs.rnn-dott.options.attn_dim=32",
                       "validate")
    assert code == 2 and "is not a mapping" not in err
    assert f"{grid} has no key 'rnn-dott' under tasks.translation.runs; close matches: rnn-dot" in err
    code, err = _error(capsys, "--params", str(grid), "--set", "scale.size=3", "validate")
    assert code == 2 and f"scale in {grid} is a value ('smoke'), not a mapping of keys" in err


def test_a_yaml_syntax_error_names_the_file_and_its_line(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("scale: smoke\nseeds: [0, 1\ndevice: cpu\n")
    code, err = _error(capsys, "--params", str(path), "validate")
    assert code == 2 and "<unicode string>" not in err
    assert err.startswith(f"attnbench: error: {path}: line 3, column 7: not valid YAML: ")
    assert "opened on line 2, column 8" in err


def _utf8_cases(tmp_path):
    """(what reads it, the latin-1 file) per reader of user files."""
    csv = tmp_path / "latin1.csv"
    csv.write_bytes(LATIN1)
    params = tmp_path / "params.yaml"
    params.write_bytes(b"scale: smoke\n# caf\xe9\n")
    captions = tmp_path / "captions.json"
    captions.write_bytes(b'{"a.png": ["caf\xe9"]}')
    libfm = tmp_path / "ratings.libfm"
    libfm.write_bytes(b"1 0:1\n1 0:1 \xe9\n")
    return {
        "params.yaml": (lambda: read_yaml(params), ParamsError, f"{params}: line 2: invalid UTF-8: byte 0xe9 at byte offset 18 of the file"),
        "intent csv": (lambda: read_intent_csv(csv), DataError, f"{csv}, line 3: invalid UTF-8: byte 0xe9 at byte offset 26 of the file"),
        "captions json": (lambda: read_captions_json(captions), DataError, f"{captions}: line 1: invalid UTF-8: byte 0xe9 at byte offset 15"),
        "text lines": (lambda: read_utf8_lines(csv, DataError), DataError, f"{csv}, line 3: invalid UTF-8: byte 0xe9 at byte offset 3 of the line"),
        "libfm": (lambda: read_libsvm(libfm, "rating"), DataError, f"{libfm}, line 2: invalid UTF-8: byte 0xe9 at byte offset 6 of the line"),
    }


@pytest.mark.parametrize("reader", ["params.yaml", "intent csv", "captions json", "text lines", "libfm"])
def test_a_latin1_file_is_named_with_the_byte_value_and_its_offset(reader, tmp_path):
    read, error, expected = _utf8_cases(tmp_path)[reader]
    with pytest.raises(error) as err:
        read()
    assert expected in str(err.value) and "(invalid continuation byte)" in str(err.value)
    assert "re-save the file as UTF-8" in str(err.value)


def test_a_refused_checksum_leaves_no_folder_and_says_what_to_do(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    (mirror / "tiny" / "a.txt").write_bytes(b"not the registered bytes")
    url = "http://127.0.0.1:9/a.txt"
    ds = Dataset(name="tiny", title="Tiny", files=(RemoteFile("a.txt", url, "0" * 64),), licence="CC0",
                 citation="Nobody. 2024.", homepage="https://example.org", description="one file")
    with pytest.raises(DataError) as err:
        datasets.fetch(ds, tmp_path / "raw", mirror=mirror, progress=False)
    assert not (tmp_path / "raw" / "tiny").exists()
    msg = str(err.value)
    assert "sha256 mismatch" in msg and f"Check the mirror's copy {mirror / 'tiny' / 'a.txt'}" in msg
    assert f"or delete it and run `attnbench data fetch tiny` again to download {url}" in msg


def _subcommands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_subcommand_help_ends_with_examples(capsys):
    commands = list(_subcommands(cli.build_parser()))
    assert len(commands) >= 15
    for words, _ in commands:
        with pytest.raises(SystemExit):
            cli.main([*words, "--help"])
        out = capsys.readouterr().out
        tail = out[out.index("\nexamples:\n"):]
        lines = [line for line in tail.splitlines()[1:] if line.startswith("  attnbench ")]
        assert 1 <= len(lines) <= 2, (words, out)
        assert all(f" {words[-1]}" in line for line in lines), (words, lines)


def test_bench_attention_help_gives_device_as_a_global_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench-attention", "--help"])
    out = capsys.readouterr().out
    usage, _, rest = out.partition("\n\n")
    assert "--device" not in usage and "with --device" not in out
    assert "attnbench --device cuda bench-attention" in out and "global options --device and --threads" in " ".join(out.split())
