"""Public datasets by name: source URLs, a sha256 per file, licence and citation; `fetch` verifies every byte.

    from attnbench import datasets
    datasets.fetch("banking77")        # -> data/raw/banking77/{train.csv,test.csv,categories.json,SOURCE.json}

    attnbench data list
    attnbench data info multi30k-en-fr
    attnbench data fetch banking77 etth2 --mirror /path/to/copies

A local mirror (ATTNBENCH_MIRROR, or params.yaml's `data_mirror`) holding `<dataset>/<file>` is read
before the network, so machines without internet fetch from a copy and still verify every checksum.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import io as aio
from .errors import DataError

log = logging.getLogger(__name__)

MIRROR_ENV = "ATTNBENCH_MIRROR"
SOURCE_JSON = "SOURCE.json"
DEFAULT_DEST = Path("data/raw")
TIMEOUT = (15, 60)  # seconds: connect, and between two reads of the body
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name inside the dataset's folder, where it is published and its sha256."""

    name: str
    url: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", "..", SOURCE_JSON):
            raise ValueError(f"RemoteFile name {self.name!r}: expected a plain file name other than {SOURCE_JSON}")
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"RemoteFile {self.name}: sha256 {self.sha256!r} is not 64 lower-case hex digits")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"RemoteFile {self.name}: url {self.url!r} is not an http(s) URL")


@dataclass(frozen=True)
class Dataset:
    """A named public dataset: its files and the terms and reference that come with them."""

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str
    homepage: str
    description: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"Dataset name {self.name!r}: expected lower-case letters, digits, '.', '_' or '-'")
        if not self.files:
            raise ValueError(f"Dataset {self.name}: no files")
        seen = [f.name for f in self.files]
        if len(set(seen)) != len(seen):
            raise ValueError(f"Dataset {self.name}: a file name appears twice in {seen}")


REGISTRY: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    """Add `ds` to REGISTRY under its name; a name already there raises ValueError."""
    if ds.name in REGISTRY:
        raise ValueError(f"dataset {ds.name!r} is already registered")
    REGISTRY[ds.name] = ds
    return ds


def names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(REGISTRY)


def get(name: str) -> Dataset:
    """The registered dataset `name`; an unknown name raises DataError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}") from None


def mirror_dir(params: dict | None = None) -> Path | None:
    """The local mirror folder: $ATTNBENCH_MIRROR when set and non-empty, else params['data_mirror'], else None."""
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    value = (params or {}).get("data_mirror")
    return Path(str(value)).expanduser() if value else None


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- fetch

def _mirror_hint(ds: Dataset, f: RemoteFile) -> str:
    return (f"without network access, point {MIRROR_ENV} (or params.yaml's `data_mirror`, or --mirror) "
            f"at a local copy holding {ds.name}/{f.name}")


def _write_verified(target: Path, chunks: Iterable[bytes], f: RemoteFile, origin: str, next_step: str) -> None:
    """Stream `chunks` into a temporary file beside `target`; move it into place only if its sha256 is f.sha256.

    A mismatch raises DataError ending with `next_step` (the temporary file is removed and `target` is left
    untouched).
    """
    with aio.atomic_path(target) as tmp, closing(iter(chunks)) as stream:  # closing: the HTTP response too
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for chunk in stream:
                digest.update(chunk)
                out.write(chunk)
        received = digest.hexdigest()
        if received != f.sha256:
            raise DataError(f"{target}: sha256 mismatch for {f.name} from {origin}: expected {f.sha256}, "
                            f"received {received}; the file was not kept. {next_step}")


def _read_mirror(src: Path, ds: Dataset, f: RemoteFile) -> Iterator[bytes]:
    try:
        with open(src, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    except OSError as exc:  # a read error, not a write error: name the mirror's file
        raise DataError(f"{src}: could not read the mirror's copy of {ds.name}/{f.name} ({exc.strerror or exc})") from None


def _download(f: RemoteFile, ds: Dataset, progress: bool) -> Iterator[bytes]:
    import requests
    from tqdm import tqdm

    from . import __version__

    headers = {"User-Agent": f"attnbench/{__version__}", "Accept-Encoding": "identity"}
    try:
        with requests.get(f.url, stream=True, timeout=TIMEOUT, headers=headers) as resp:
            resp.raise_for_status()
            length = resp.headers.get("Content-Length")
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            total = int(length) if length and length.isdigit() and not encoded else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"{ds.name}/{f.name}",
                      disable=not progress, leave=False) as bar:
                for chunk in resp.iter_content(chunk_size=_CHUNK):
                    bar.update(len(chunk))
                    yield chunk
    except requests.RequestException as exc:  # an OSError subclass: turn it into DataError before atomic_path sees it
        raise DataError(f"{f.url}: could not download {ds.name}/{f.name} ({exc}); {_mirror_hint(ds, f)}") from None


def fetch(name_or_dataset: str | Dataset, dest_root: str | Path = DEFAULT_DEST, mirror: str | Path | None = None,
          progress: bool = True) -> Path:
    """Make `dest_root/<name>/` hold every file of the dataset, each verified against its sha256; return that folder.

    Per file: a copy already there with the right sha256 is kept (one with a wrong sha256 is removed
    and fetched again, and SOURCE.json with it until the set is whole); otherwise the mirror's
    `<mirror>/<name>/<file>` is copied, else the URL is downloaded. `mirror=None` means mirror_dir()
    (the environment variable only). Every file is written beside its final name and moved into place
    only once verified; a mismatch or a network error raises DataError and keeps nothing unverified.
    Ends by writing SOURCE.json: the dataset's terms and, per file, its url, sha256 and origin
    ("cache", "mirror" or "url").
    """
    ds = get(name_or_dataset) if isinstance(name_or_dataset, str) else name_or_dataset
    folder = Path(dest_root) / ds.name
    mirror = Path(mirror).expanduser() if mirror is not None else mirror_dir()
    if mirror is not None and not mirror.is_dir():
        raise DataError(f"mirror folder {mirror} does not exist (from --mirror, {MIRROR_ENV} or `data_mirror`)")
    try:
        return _fetch(ds, folder, mirror, progress)
    finally:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a refused first file leaves no empty data/raw/<name>/ behind


def _fetch(ds: Dataset, folder: Path, mirror: Path | None, progress: bool) -> Path:
    source_json = folder / SOURCE_JSON
    origins: dict[str, str] = {}
    for f in ds.files:
        target = folder / f.name
        if target.is_file():
            received = sha256_file(target)
            if received == f.sha256:
                origins[f.name] = "cache"
                continue
            log.warning("%s: sha256 %s, expected %s; removing it and fetching it again", target, received, f.sha256)
            target.unlink()
        source_json.unlink(missing_ok=True)  # the folder no longer holds a verified set until the end
        src = mirror / ds.name / f.name if mirror is not None else None
        if src is not None and src.is_file():
            log.info("%s/%s: copying from the mirror %s", ds.name, f.name, src)
            _write_verified(target, _read_mirror(src, ds, f), f, f"the mirror {src}",
                            f"Check the mirror's copy {src} (another version, or damaged?): replace it with the "
                            f"published file, or delete it and run `attnbench data fetch {ds.name}` again to "
                            f"download {f.url}.")
            origins[f.name] = "mirror"
        else:
            if src is not None:
                log.info("%s/%s: not in the mirror (%s); downloading %s", ds.name, f.name, src, f.url)
            else:
                log.info("%s/%s: downloading %s", ds.name, f.name, f.url)
            _write_verified(target, _download(f, ds, progress), f, f.url,
                            f"The download may have been cut short: run `attnbench data fetch {ds.name}` again; "
                            f"if the mismatch persists, the file at that URL has changed since it was registered.")
            origins[f.name] = "url"
    if source_json.is_file() and set(origins.values()) == {"cache"}:
        return folder  # nothing fetched: SOURCE.json keeps saying where the files came from (and its mtime)
    aio.write_json(source_json, {
        "name": ds.name, "title": ds.title, "licence": ds.licence, "citation": ds.citation, "homepage": ds.homepage,
        "files": [{"name": f.name, "url": f.url, "sha256": f.sha256, "origin": origins[f.name]} for f in ds.files],
    })
    return folder


# -------------------------------------------------------------------------------------------- registry

def _files(prefix: str, pairs: str) -> tuple[RemoteFile, ...]:
    """RemoteFiles from lines of 'sha256 name' under one URL prefix."""
    out = []
    for line in pairs.strip().splitlines():
        sha, name = line.split()
        out.append(RemoteFile(name=name, url=prefix + name, sha256=sha))
    return tuple(out)


_MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
_MULTI30K_EN = """
d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f train.en.gz
14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28 val.en.gz
611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9 test_2016_flickr.en.gz
"""
_MULTI30K_FR = """
622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c train.fr.gz
ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9 val.fr.gz
6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90 test_2016_flickr.fr.gz
"""
_MULTI30K_DE = """
726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6 train.de.gz
f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a val.de.gz
9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8 test_2016_flickr.de.gz
"""
_MULTI30K_LICENCE = "as distributed by the Multi30k authors for research; English captions from Flickr30k"
_MULTI30K_CITATION = (
    "Desmond Elliott, Stella Frank, Khalil Sima'an and Lucia Specia. Multi30K: Multilingual English-German "
    "Image Descriptions. Proceedings of the 5th Workshop on Vision and Language (VL@ACL), 2016. "
    "Desmond Elliott, Stella Frank, Loïc Barrault, Fethi Bougares and Lucia Specia. Findings of the Second "
    "Shared Task on Multimodal Machine Translation and Multilingual Image Description. Proceedings of the "
    "Second Conference on Machine Translation (WMT), 2017."
)
_MULTI30K_HOME = "https://github.com/multi30k/dataset"


def _multi30k(target: str, language: str, pairs: str) -> Dataset:
    en, tgt = _files(_MULTI30K_URL, _MULTI30K_EN), _files(_MULTI30K_URL, pairs)
    return Dataset(
        name=f"multi30k-en-{target}",
        title=f"Multi30k task 1, English-{language}",
        files=tuple(f for pair in zip(en, tgt) for f in pair),
        licence=_MULTI30K_LICENCE,
        citation=_MULTI30K_CITATION,
        homepage=_MULTI30K_HOME,
        description=(f"Flickr30k image captions in English with {language} translations: 29,000 train, 1,014 val "
                     f"and 1,000 test_2016_flickr sentence pairs, raw (untokenised, cased), one gzipped text "
                     f"file per split and language, line-aligned."),
    )


register(_multi30k("fr", "French", _MULTI30K_FR))
register(_multi30k("de", "German", _MULTI30K_DE))

register(Dataset(
    name="banking77",
    title="BANKING77 intent detection",
    files=_files("https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/", """
b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b train.csv
d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d test.csv
53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63 categories.json
"""),
    licence="CC BY 4.0",
    citation=("Iñigo Casanueva, Tadas Temčinas, Daniela Gerz, Matthew Henderson and Ivan Vulić. Efficient Intent "
              "Detection with Dual Sentence Encoders. Proceedings of the 2nd Workshop on Natural Language "
              "Processing for Conversational AI (NLP4ConvAI@ACL), 2020."),
    homepage="https://github.com/PolyAI-LDN/task-specific-datasets",
    description=("Online-banking customer queries labelled with 77 fine-grained intents: 10,003 train and 3,080 "
                 "test utterances in CSV files with columns text,category; categories.json lists the intents."),
))

register(Dataset(
    name="etth2",
    title="ETTh2 electricity transformer temperature (hourly)",
    files=(RemoteFile(name="ETTh2.csv",
                      url="https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh2.csv",
                      sha256="a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b"),),
    licence="CC BY-ND 4.0",
    citation=("Haoyi Zhou, Shanghang Zhang, Jieqi Peng, Shuai Zhang, Jianxin Li, Hui Xiong and Wancai Zhang. "
              "Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting. Proceedings of "
              "the AAAI Conference on Artificial Intelligence (AAAI), 2021."),
    homepage="https://github.com/zhouhaoyi/ETDataset",
    description=("Hourly readings of one electricity transformer: six load series (HUFL, HULL, MUFL, MULL, LUFL, "
                 "LULL) and the oil temperature OT, 17,420 rows from 2016-07-01, one CSV with a date column."),
))


# ------------------------------------------------------------------------------------------------- CLI

def _cli_params(args) -> dict | None:
    """params for mirror_dir: a dict on args.params as is; a params file path read unvalidated; else None."""
    params = getattr(args, "params", None)
    if isinstance(params, dict):
        return params
    if isinstance(params, (str, Path)) and Path(params).is_file():
        from .config import read_yaml

        return read_yaml(Path(params))
    return None


def _error(exc: Exception) -> int:
    print(f"attnbench: error: {exc}", file=sys.stderr)
    return 1


def cmd_list(args) -> int:
    """Print one block per registered dataset: name, title, licence and file names."""
    for ds in (get(n) for n in names()):
        print(f"{ds.name}\t{ds.title}\n    licence: {ds.licence}\n    files:   {' '.join(f.name for f in ds.files)}")
    return 0


def cmd_info(args) -> int:
    """Print everything registered about one dataset, citation and URLs included."""
    try:
        ds = get(args.name)
    except DataError as exc:
        return _error(exc)
    print(f"name:        {ds.name}\ntitle:       {ds.title}\nhomepage:    {ds.homepage}\nlicence:     {ds.licence}\n"
          f"description: {ds.description}\ncitation:    {ds.citation}\nfiles:")
    for f in ds.files:
        print(f"  {f.name}\n    url:    {f.url}\n    sha256: {f.sha256}")
    return 0


def cmd_fetch(args) -> int:
    """Fetch and verify each named dataset into --dest; every name is checked before anything is fetched."""
    try:
        datasets = [get(n) for n in args.names]
        mirror = Path(args.mirror) if args.mirror else mirror_dir(_cli_params(args))
        for ds in datasets:
            folder = fetch(ds, Path(args.dest), mirror=mirror, progress=not args.no_progress)
            print(f"{ds.name}: {len(ds.files)} file(s) verified in {folder}")
    except DataError as exc:
        return _error(exc)
    return 0


def add_cli(subparsers: Any) -> None:
    """Add the `data` command (list, info, fetch) to an argparse subparsers object."""
    from .helptext import HelpWithExamples, examples

    fetch_example = ("attnbench data fetch banking77 --mirror /path/to/copies",
                     "copy and verify from a local mirror holding banking77/<file>")
    p = subparsers.add_parser("data", help="list, describe and download the registered public datasets",
                              description="The registered public datasets: source URLs, sha256 per file, licence "
                                          "and citation. `fetch` reads a local mirror before the network and "
                                          "verifies every file's sha256.",
                              epilog=examples(("attnbench data list", "every registered dataset"), fetch_example),
                              formatter_class=HelpWithExamples)
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = sub.add_parser("list", help="name, title, licence and files of every registered dataset",
                       description="List every registered dataset: name, title, licence and file names.",
                       epilog=examples(("attnbench data list", "name, title, licence and files of each")),
                       formatter_class=HelpWithExamples)
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("info", help="everything about one dataset, citation and URLs included",
                       description="Print one dataset's title, homepage, licence, description, citation and, per "
                                   "file, its URL and sha256.",
                       epilog=examples(("attnbench data info multi30k-en-fr", "its licence, citation and URLs")),
                       formatter_class=HelpWithExamples)
    q.add_argument("name", metavar="NAME", help="dataset name (see `data list`)")
    q.set_defaults(func=cmd_info)
    q = sub.add_parser("fetch", help="download datasets into DEST/<name>/, verifying every sha256",
                       description="Make DEST/<name>/ hold every file of each dataset, verified against its "
                                   "sha256: a verified copy already there is kept, else the mirror's "
                                   "<mirror>/<name>/<file> is copied, else the URL is downloaded. Writes "
                                   f"DEST/<name>/{SOURCE_JSON} (terms, citation, where each file came from).",
                       epilog=examples(("attnbench data fetch etth2", "download into data/raw/etth2/"), fetch_example),
                       formatter_class=HelpWithExamples)
    q.add_argument("names", nargs="+", metavar="NAME", help="dataset name(s) (see `data list`)")
    q.add_argument("--dest", default=str(DEFAULT_DEST), metavar="DIR",
                   help="root folder; each dataset goes to DIR/<name>/ (default: %(default)s)")
    q.add_argument("--mirror", metavar="DIR",
                   help=f"local mirror holding <name>/<file>, read before the network (default: ${MIRROR_ENV}, "
                        "else params.yaml's data_mirror)")
    q.add_argument("--no-progress", action="store_true", help="no download progress bars")
    q.set_defaults(func=cmd_fetch)
