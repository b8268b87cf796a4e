"""Dataset registry: verified downloads from a local HTTP server, the mirror, the real mirror's files, the CLI."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import socket
import threading
from functools import partial
from pathlib import Path

import pytest

from attnbench import datasets
from attnbench.datasets import Dataset, RemoteFile
from attnbench.errors import DataError

REAL_MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
REAL_MIRRORED = ("multi30k-en-fr", "banking77", "etth2")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Server:
    """An http.server on 127.0.0.1 serving `root`, counting the GET requests it answers."""

    def __init__(self, root: Path):
        self.root, self.hits = root, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv(datasets.MIRROR_ENV, raising=False)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    yield srv
    srv.close()


CONTENT = {"a.txt": b"first file\n", "b.bin": bytes(range(256)) * 3}


def _dataset(base_url: str, content: dict[str, bytes] = CONTENT, name: str = "tiny", sha: dict | None = None) -> Dataset:
    files = tuple(RemoteFile(n, base_url + n, (sha or {}).get(n, _sha(data))) for n, data in content.items())
    return Dataset(name=name, title="Tiny test set", files=files, licence="CC0", citation="Nobody. Tiny. 2024.",
                   homepage="https://example.org/tiny", description="two small files")


def _serve(srv: _Server, content: dict[str, bytes] = CONTENT) -> None:
    for n, data in content.items():
        (srv.root / n).write_bytes(data)


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _source(folder: Path) -> dict:
    return json.loads((folder / "SOURCE.json").read_text())


def test_download_lands_verified_with_source_json(server, tmp_path):
    _serve(server)
    ds = _dataset(server.url)
    folder = datasets.fetch(ds, tmp_path / "raw", progress=False)
    assert folder == tmp_path / "raw" / "tiny"
    assert _listing(folder) == {"a.txt", "b.bin", "SOURCE.json"}  # no temporary file left
    for n, data in CONTENT.items():
        assert (folder / n).read_bytes() == data
    assert sorted(server.hits) == ["/a.txt", "/b.bin"]
    src = _source(folder)
    assert {k: src[k] for k in ("name", "title", "licence", "citation", "homepage")} == {
        "name": "tiny", "title": "Tiny test set", "licence": "CC0", "citation": "Nobody. Tiny. 2024.",
        "homepage": "https://example.org/tiny"}
    assert src["files"] == [{"name": f.name, "url": f.url, "sha256": f.sha256, "origin": "url"} for f in ds.files]


def test_bytes_not_matching_the_sha256_are_refused_and_nothing_partial_stays(server, tmp_path):
    _serve(server, {"a.txt": CONTENT["a.txt"], "b.bin": b"tampered"})
    ds = _dataset(server.url)  # b.bin registered with the sha256 of CONTENT["b.bin"]
    with pytest.raises(DataError) as err:
        datasets.fetch(ds, tmp_path / "raw", progress=False)
    msg = str(err.value)
    assert "b.bin" in msg and server.url + "b.bin" in msg
    assert f"expected {_sha(CONTENT['b.bin'])}" in msg and f"received {_sha(b'tampered')}" in msg
    # the verified file stays; no temporary file, no bad b.bin, no SOURCE.json
    assert _listing(tmp_path / "raw" / "tiny") == {"a.txt"}


def test_second_fetch_downloads_nothing(server, tmp_path):
    _serve(server)
    ds = _dataset(server.url)
    datasets.fetch(ds, tmp_path / "raw", progress=False)
    hits = len(server.hits)
    stamp = (tmp_path / "raw" / ds.name / "SOURCE.json").stat().st_mtime_ns
    folder = datasets.fetch(ds, tmp_path / "raw", progress=False)
    assert len(server.hits) == hits == 2
    # SOURCE.json still says where the files came from, untouched (a pipeline output of the fetch step)
    assert [f["origin"] for f in _source(folder)["files"]] == ["url", "url"]
    assert (folder / "SOURCE.json").stat().st_mtime_ns == stamp


def test_corrupted_cached_file_is_fetched_again(server, tmp_path):
    _serve(server)
    ds = _dataset(server.url)
    folder = datasets.fetch(ds, tmp_path / "raw", progress=False)
    (folder / "b.bin").write_bytes(b"bit rot")
    datasets.fetch(ds, tmp_path / "raw", progress=False)
    assert server.hits.count("/b.bin") == 2 and server.hits.count("/a.txt") == 1
    assert (folder / "b.bin").read_bytes() == CONTENT["b.bin"]
    assert [f["origin"] for f in _source(folder)["files"]] == ["cache", "url"]


def test_mirror_is_read_before_the_network(server, tmp_path):
    _serve(server)
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    (mirror / "tiny" / "a.txt").write_bytes(CONTENT["a.txt"])  # b.bin is not in the mirror: downloaded
    folder = datasets.fetch(_dataset(server.url), tmp_path / "raw", mirror=mirror, progress=False)
    assert server.hits == ["/b.bin"]
    assert [f["origin"] for f in _source(folder)["files"]] == ["mirror", "url"]

    (mirror / "tiny" / "b.bin").write_bytes(CONTENT["b.bin"])
    folder = datasets.fetch(_dataset(server.url), tmp_path / "raw2", mirror=mirror, progress=False)
    assert server.hits == ["/b.bin"]  # nothing more from the network
    assert [f["origin"] for f in _source(folder)["files"]] == ["mirror", "mirror"]
    for n, data in CONTENT.items():
        assert (folder / n).read_bytes() == data


def test_mirror_from_environment_when_none_is_given(server, tmp_path, monkeypatch):
    _serve(server)
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    for n, data in CONTENT.items():
        (mirror / "tiny" / n).write_bytes(data)
    monkeypatch.setenv(datasets.MIRROR_ENV, str(mirror))
    datasets.fetch(_dataset(server.url), tmp_path / "raw", progress=False)
    assert server.hits == []


def test_bad_mirror_file_is_refused(server, tmp_path):
    _serve(server)
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    (mirror / "tiny" / "a.txt").write_bytes(b"not the registered bytes")
    with pytest.raises(DataError) as err:
        datasets.fetch(_dataset(server.url), tmp_path / "raw", mirror=mirror, progress=False)
    msg = str(err.value)
    assert str(mirror / "tiny" / "a.txt") in msg
    assert f"expected {_sha(CONTENT['a.txt'])}" in msg and f"received {_sha(b'not the registered bytes')}" in msg
    assert server.hits == []  # a bad mirror is an error, not a reason to go to the network
    assert _listing(tmp_path / "raw" / "tiny") == set()


def test_missing_mirror_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        datasets.fetch(_dataset("http://127.0.0.1:9/"), tmp_path / "raw", mirror=tmp_path / "nope", progress=False)


def test_unreachable_url_names_the_url_and_the_mirror_setting(tmp_path):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(DataError) as err:
        datasets.fetch(_dataset(url), tmp_path / "raw", progress=False)
    msg = str(err.value)
    assert url + "a.txt" in msg and datasets.MIRROR_ENV in msg and "data_mirror" in msg
    assert _listing(tmp_path / "raw" / "tiny") == set()


def test_http_error_is_a_data_error(server, tmp_path):
    with pytest.raises(DataError, match=r"404.*ATTNBENCH_MIRROR"):
        datasets.fetch(_dataset(server.url), tmp_path / "raw", progress=False)  # nothing served
    assert _listing(tmp_path / "raw" / "tiny") == set()


def test_sha256_file(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    assert datasets.sha256_file(tmp_path / "x") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_mirror_dir_prefers_the_environment(monkeypatch, tmp_path):
    assert datasets.mirror_dir() is None
    assert datasets.mirror_dir({}) is None
    assert datasets.mirror_dir({"data_mirror": None}) is None
    assert datasets.mirror_dir({"data_mirror": "/from/params"}) == Path("/from/params")
    monkeypatch.setenv(datasets.MIRROR_ENV, str(tmp_path))
    assert datasets.mirror_dir({"data_mirror": "/from/params"}) == tmp_path
    assert datasets.mirror_dir(None) == tmp_path


def test_register_get_names(monkeypatch):
    monkeypatch.setattr(datasets, "REGISTRY", dict(datasets.REGISTRY))
    ds = _dataset("http://127.0.0.1:9/")
    assert datasets.register(ds) is ds and datasets.get("tiny") is ds and "tiny" in datasets.names()
    with pytest.raises(ValueError, match="already registered"):
        datasets.register(ds)
    with pytest.raises(DataError) as err:
        datasets.get("no-such-set")
    assert "no-such-set" in str(err.value) and all(n in str(err.value) for n in datasets.names())


def test_malformed_entries_are_refused():
    with pytest.raises(ValueError, match="sha256"):
        RemoteFile("a", "https://x/a", "ABC")
    with pytest.raises(ValueError, match="plain file name"):
        RemoteFile("../a", "https://x/a", "0" * 64)
    with pytest.raises(ValueError, match="twice"):
        f = RemoteFile("a", "https://x/a", "0" * 64)
        Dataset("d", "t", (f, f), "l", "c", "h", "d")


def test_registered_datasets():
    assert datasets.names() == ["banking77", "etth2", "multi30k-en-de", "multi30k-en-fr"]
    fr, de = datasets.get("multi30k-en-fr"), datasets.get("multi30k-en-de")
    prefix = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
    splits = ("train", "val", "test_2016_flickr")
    assert [f.name for f in fr.files] == [f"{s}.{lang}.gz" for s in splits for lang in ("en", "fr")]
    assert [f.name for f in de.files] == [f"{s}.{lang}.gz" for s in splits for lang in ("en", "de")]
    assert all(f.url == prefix + f.name for f in fr.files + de.files)
    assert {f for f in fr.files if ".en." in f.name} == {f for f in de.files if ".en." in f.name}
    assert {f.name: f.sha256 for f in de.files if ".de." in f.name} == {
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"}
    assert datasets.get("banking77").licence == "CC BY 4.0" and datasets.get("etth2").licence == "CC BY-ND 4.0"
    assert [f.url for f in datasets.get("etth2").files] == [
        "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh2.csv"]
    for ds in datasets.REGISTRY.values():
        assert ds.citation and ds.homepage.startswith("https://") and ds.description


@pytest.mark.skipif(not REAL_MIRROR.is_dir(), reason=f"no real-data mirror at {REAL_MIRROR}")
@pytest.mark.parametrize("name", REAL_MIRRORED)
def test_real_mirror_matches_every_registered_checksum(name, tmp_path, monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("fetch went to the network")

    monkeypatch.setattr(requests, "get", no_network)
    folder = datasets.fetch(name, tmp_path, mirror=REAL_MIRROR, progress=False)
    ds = datasets.get(name)
    for f in ds.files:
        assert datasets.sha256_file(folder / f.name) == f.sha256, f.name
    assert [f["origin"] for f in _source(folder)["files"]] == ["mirror"] * len(ds.files)


# ------------------------------------------------------------------------------------------------- CLI

def _cli(argv, **extra):
    parser = argparse.ArgumentParser(prog="attnbench")
    datasets.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    for key, value in extra.items():
        setattr(args, key, value)
    return args.func(args)


def test_cli_list_prints_every_name(capsys):
    assert _cli(["data", "list"]) == 0
    out = capsys.readouterr().out
    for ds in datasets.REGISTRY.values():
        assert ds.name in out and ds.licence in out


def test_cli_info_prints_citation_and_urls(capsys):
    assert _cli(["data", "info", "banking77"]) == 0
    out = capsys.readouterr().out
    ds = datasets.get("banking77")
    assert ds.citation in out and all(f.url in out and f.sha256 in out for f in ds.files)


def test_cli_fetch_unknown_name_fails_with_the_known_names(capsys, tmp_path):
    assert _cli(["data", "fetch", "banking77", "no-such-set", "--dest", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "no-such-set" in err and all(n in err for n in datasets.names())
    assert not any(tmp_path.iterdir())  # names are checked before anything is fetched


def test_cli_fetch_uses_mirror_option_then_params(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "REGISTRY", dict(datasets.REGISTRY))
    datasets.register(_dataset(server.url))
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    for n, data in CONTENT.items():
        (mirror / "tiny" / n).write_bytes(data)
    assert _cli(["data", "fetch", "tiny", "--dest", str(tmp_path / "a"), "--mirror", str(mirror), "--no-progress"]) == 0
    assert _cli(["data", "fetch", "tiny", "--dest", str(tmp_path / "b"), "--no-progress"],
                params={"data_mirror": str(mirror)}) == 0
    assert server.hits == []
    assert "tiny: 2 file(s) verified" in capsys.readouterr().out
    # without a mirror it downloads; a bad download is reported and exits 1
    (server.root / "a.txt").write_bytes(b"wrong")
    (server.root / "b.bin").write_bytes(CONTENT["b.bin"])
    assert _cli(["data", "fetch", "tiny", "--dest", str(tmp_path / "c"), "--no-progress"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
