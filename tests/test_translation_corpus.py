"""Tests for the synthetic translation corpus and the parallel-corpus readers."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from attnbench.tasks.translation.data import (
    PAST_MARKER,
    PLURAL_MARKER,
    SOURCE_VOCAB,
    TARGET_LEXICON,
    Clause,
    CorpusError,
    NounPhrase,
    Pair,
    Predicate,
    PrepPhrase,
    Sentence,
    bucket_labels,
    generate_pairs,
    generate_splits,
    length_bucket,
    read_pairs_jsonl,
    read_parallel,
    realize,
    write_pairs_jsonl,
)


@pytest.fixture(scope="module")
def pairs() -> list[Pair]:
    return generate_pairs(1500, seed=11)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Pair]]:
    return generate_splits({"train": 2000, "valid": 200, "test": 500}, seed=0)


def stem(word: str) -> str:
    """The target pseudo-word of an uninflected source word."""
    (target,) = TARGET_LEXICON[word]
    return target


# --------------------------------------------------------------------------- generation


def test_generation_is_deterministic_per_seed() -> None:
    assert generate_pairs(200, seed=7) == generate_pairs(200, seed=7)
    assert generate_pairs(200, seed=7) != generate_pairs(200, seed=8)
    sizes = {"train": 100, "test": 40}
    assert generate_splits(sizes, seed=3) == generate_splits(sizes, seed=3)
    assert generate_splits(sizes, seed=3)["test"] != generate_splits(sizes, seed=4)["test"]


def test_eval_split_does_not_depend_on_train_size() -> None:
    small = generate_splits({"train": 50, "test": 60}, seed=5)
    large = generate_splits({"train": 400, "test": 60}, seed=5)
    assert small["test"] == large["test"]


def test_splits_are_disjoint_on_source(splits: dict[str, list[Pair]]) -> None:
    assert {name: len(v) for name, v in splits.items()} == {"train": 2000, "valid": 200, "test": 500}
    assert list(splits) == ["train", "valid", "test"]
    sources = {name: [p.src for p in v] for name, v in splits.items()}
    for name, srcs in sources.items():
        assert len(set(srcs)) == len(srcs), f"duplicate source in {name}"
    assert not set(sources["train"]) & set(sources["valid"])
    assert not set(sources["train"]) & set(sources["test"])
    assert not set(sources["valid"]) & set(sources["test"])


def test_lengths_respected_and_test_buckets_populated(splits: dict[str, list[Pair]]) -> None:
    for split in splits.values():
        assert all(3 <= len(p.src) <= 50 for p in split)
    test_lengths = Counter(len(p.src) for p in splits["test"])
    assert set(test_lengths) == set(range(3, 51))  # every length present: roughly uniform
    assert max(test_lengths.values()) - min(test_lengths.values()) <= 1
    buckets = Counter(length_bucket(n) for n in (len(p.src) for p in splits["test"]))
    assert set(buckets) == set(bucket_labels())
    assert min(buckets.values()) >= 50


def test_custom_length_range() -> None:
    lengths = {len(p.src) for p in generate_pairs(300, seed=2, min_len=5, max_len=12)}
    assert lengths == set(range(5, 13))
    long = generate_pairs(20, seed=2, min_len=80, max_len=90)
    assert all(80 <= len(p.src) <= 90 for p in long)
    with pytest.raises(ValueError):
        generate_pairs(10, seed=0, min_len=2)
    with pytest.raises(ValueError):
        generate_pairs(10, seed=0, min_len=10, max_len=9)


def test_gold_links_valid_and_one_per_target_token(pairs: list[Pair]) -> None:
    for p in pairs:
        assert p.align is not None
        assert all(0 <= i < len(p.src) and 0 <= j < len(p.tgt) for i, j in p.align)
        assert [j for _, j in p.align] == list(range(len(p.tgt)))  # exactly one link each
        aligned = {i for i, _ in p.align}
        unaligned = {p.src[i] for i in range(len(p.src)) if i not in aligned}
        assert unaligned <= {"the"}


def test_one_to_many_words_present(pairs: list[Pair]) -> None:
    fanout = Counter()
    for p in pairs:
        per_src = Counter(i for i, _ in p.align)
        for i, j in p.align:
            if per_src[i] == 2 and p.tgt[j] in (PLURAL_MARKER, PAST_MARKER):
                fanout[p.tgt[j]] += 1
    assert fanout[PLURAL_MARKER] > 100 and fanout[PAST_MARKER] > 100
    assert TARGET_LEXICON["dogs"] == (stem("dog"), PLURAL_MARKER)
    assert TARGET_LEXICON["chased"] == (stem("chase"), PAST_MARKER)
    assert TARGET_LEXICON["taught"] == (stem("teach"), PAST_MARKER)
    assert TARGET_LEXICON["the"] == ()


def test_reordering_happens(pairs: list[Pair]) -> None:
    crossing = total = 0
    for p in pairs:
        furthest = -1
        for i, _ in p.align:
            crossing += i < furthest
            furthest = max(furthest, i)
            total += 1
    assert 0.15 < crossing / total < 0.6
    assert any(list(p.align) != sorted(p.align) for p in pairs)


def test_adjective_noun_swap_hand_built() -> None:
    pair = realize(Sentence([Clause(NounPhrase("dog", "a", adjs=["big", "red"]), Predicate("sleep"))]))
    assert pair.src == ("a", "big", "red", "dog", "sleeps")
    assert pair.tgt == (stem("a"), stem("dog"), stem("big"), stem("red"), stem("sleep"))
    assert pair.align == ((0, 0), (3, 1), (1, 2), (2, 3), (4, 4))


def test_verb_final_postposition_and_relative_clause_hand_built() -> None:
    """The module docstring example, with its pseudo-words pinned."""
    rel = Predicate("see", past=True, obj=NounPhrase("cat", "a", depth=1), is_rel=True)
    main = Predicate("chase", past=True, obj=NounPhrase("bird", "the", adjs=["small"]),
                     pp=PrepPhrase("in", NounPhrase("house", "my", adjs=["red"], depth=1)), adv="quickly")
    sentence = Sentence([Clause(NounPhrase("dog", "the", True, ["big"], rel=rel), main),
                         Clause(NounPhrase("king"), Predicate("sleep"))], ["and"])
    pair = realize(sentence)
    assert " ".join(pair.src) == ("the big dogs that saw a cat chased the small bird in my red "
                                  "house quickly and the king sleeps")
    assert " ".join(pair.tgt) == ("zigi ta bavo toso moze nigura mibisos ka puziza gemomo zupo gefu "
                                  "ruro pugi karor motepa ka nagal zebu lugegi")
    assert " ".join(f"{i}-{j}" for i, j in pair.align) == (
        "2-0 2-1 1-2 3-3 5-4 6-5 4-6 4-7 10-8 9-9 12-10 14-11 13-12 11-13 15-14 7-15 7-16 "
        "16-17 18-18 19-19")


def test_realize_rejects_ungrammatical_trees() -> None:
    with pytest.raises(ValueError):
        realize(Sentence([Clause(NounPhrase("dog", "a", plural=True), Predicate("sleep"))]))
    with pytest.raises(ValueError):  # transitive verb without object
        realize(Sentence([Clause(NounPhrase("dog"), Predicate("chase"))]))
    with pytest.raises(ValueError):
        realize(Sentence([Clause(NounPhrase("unicorn"), Predicate("sleep"))]))


def test_lexicon_consistent_across_pairs(pairs: list[Pair]) -> None:
    seen: dict[str, tuple[str, ...]] = {}
    translation: dict[tuple[str, ...], tuple[str, ...]] = {}
    for p in pairs:
        assert translation.setdefault(p.src, p.tgt) == p.tgt  # a function of the source string
        linked: dict[int, list[str]] = {i: [] for i in range(len(p.src))}
        for i, j in p.align:
            linked[i].append(p.tgt[j])
        for i, words in linked.items():
            assert seen.setdefault(p.src[i], tuple(words)) == tuple(words)
            assert tuple(words) == TARGET_LEXICON[p.src[i]]
    stems = [t[0] for w, t in TARGET_LEXICON.items() if t]
    assert len(set(stems)) < len(stems)  # inflected forms share a stem ...
    assert not set(stems) & SOURCE_VOCAB  # ... and target words are not English words


def test_vocabulary_and_length_ratio(splits: dict[str, list[Pair]]) -> None:
    assert 150 <= len(SOURCE_VOCAB) <= 300
    train = splits["train"]
    assert {w for p in train for w in p.src} == SOURCE_VOCAB
    assert all(3 * len(p.tgt) <= 5 * len(p.src) for p in train)
    assert sum(len(p.tgt) for p in train) / sum(len(p.src) for p in train) < 1.2


# --------------------------------------------------------------------------- length buckets


def test_length_bucket_labels() -> None:
    assert bucket_labels() == ["1-10", "11-20", "21-30", "31-40", "41+"]
    assert [length_bucket(n) for n in (1, 10, 11, 20, 21, 40, 41, 500)] == [
        "1-10", "1-10", "11-20", "11-20", "21-30", "31-40", "41+", "41+"]
    assert length_bucket(7, edges=(5, 15)) == "6-15"
    assert length_bucket(16, edges=(5, 15)) == "16+"
    with pytest.raises(ValueError):
        length_bucket(3, edges=(10, 10))
    with pytest.raises(ValueError):
        length_bucket(-1)


# --------------------------------------------------------------------------- readers


def write(path: Path, text: str | bytes, *, gz: bool = False) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_read_two_files(tmp_path: Path) -> None:
    src = write(tmp_path / "s.txt", "A b c\r\nd  e\n")
    tgt = write(tmp_path / "t.txt", "x y\nz\n\n")
    assert read_parallel(src, tgt) == [Pair(("A", "b", "c"), ("x", "y"), None),
                                       Pair(("d", "e"), ("z",), None)]
    assert read_parallel(str(src), str(tgt), lowercase=True)[0].src == ("a", "b", "c")
    assert read_parallel(src, tgt, max_len=2) == [Pair(("d", "e"), ("z",), None)]


def test_read_tsv_and_gzip(tmp_path: Path) -> None:
    text = "le chat\tthe cat\nun chien noir\ta black dog"
    expected = [Pair(("le", "chat"), ("the", "cat")), Pair(("un", "chien", "noir"), ("a", "black", "dog"))]
    assert read_parallel(write(tmp_path / "c.tsv", text)) == expected
    assert read_parallel(write(tmp_path / "c.tsv.gz", text, gz=True)) == expected
    assert read_parallel(write(tmp_path / "plain_name.tsv", text, gz=True)) == expected  # magic bytes
    src = write(tmp_path / "s.bin", "a b\n", gz=True)
    tgt = write(tmp_path / "t.txt", "c\n")
    assert read_parallel(src, tgt) == [Pair(("a", "b"), ("c",))]


def test_read_alignments(tmp_path: Path) -> None:
    src = write(tmp_path / "s.txt", "a b c\nd e\n")
    tgt = write(tmp_path / "t.txt", "x y\nz\n")
    ali = write(tmp_path / "a.txt", "2-0 0-1 1-1\n\n")
    pairs = read_parallel(src, tgt, alignments=ali)
    assert pairs[0].align == ((2, 0), (0, 1), (1, 1))
    assert pairs[1].align == ()
    assert read_parallel(src, tgt, alignments=write(tmp_path / "a.gz", "0-0\n1-0\n", gz=True))[1].align == ((1, 0),)


def assert_corpus_error(exc: pytest.ExceptionInfo, path: Path, line: int | None, *extra: str) -> None:
    message = str(exc.value)
    assert str(path) in message, message
    if line is not None:
        assert f"line {line}" in message, message
    for fragment in extra:
        assert fragment in message, message


def test_error_line_count_mismatch(tmp_path: Path) -> None:
    src = write(tmp_path / "src.txt", "a\nb\nc\n")
    tgt = write(tmp_path / "tgt.txt", "x\ny\n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(src, tgt)
    assert_corpus_error(exc, src, 3, str(tgt), "3 lines", "2 lines")


def test_error_empty_file(tmp_path: Path) -> None:
    src = write(tmp_path / "src.txt", "a b\n")
    tgt = write(tmp_path / "empty.txt", " \n\n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(src, tgt)
    assert_corpus_error(exc, tgt, None, "empty file")
    with pytest.raises(CorpusError) as exc:
        read_parallel(write(tmp_path / "void.tsv", b""))
    assert_corpus_error(exc, tmp_path / "void.tsv", None, "empty file")


@pytest.mark.parametrize("gz", [False, True])
def test_error_undecodable_bytes(tmp_path: Path, gz: bool) -> None:
    src = write(tmp_path / "bad.txt", b"ok line\nstill ok\nbro\xffken\nfine\n", gz=gz)
    tgt = write(tmp_path / "tgt.txt", "a\nb\nc\nd\n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(src, tgt)
    assert_corpus_error(exc, src, 3, "UTF-8")


def test_error_tsv_tabs(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", "a\tb\nno tab here\n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(path)
    assert_corpus_error(exc, path, 2, "tab")
    path = write(tmp_path / "d.tsv", "a\tb\nc\td\ne\tf\tg\n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(path)
    assert_corpus_error(exc, path, 3, "found 2")


def test_error_empty_side(tmp_path: Path) -> None:
    src = write(tmp_path / "src.txt", "a\n  \nc\n")
    tgt = write(tmp_path / "tgt.txt", "x\ny\nz\n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(src, tgt)
    assert_corpus_error(exc, src, 2, "empty source")
    path = write(tmp_path / "c.tsv", "a\tb\nc\td\ne f\t \n")
    with pytest.raises(CorpusError) as exc:
        read_parallel(path)
    assert_corpus_error(exc, path, 3, "empty target")


def test_error_alignments(tmp_path: Path) -> None:
    src = write(tmp_path / "src.txt", "a b c\nd e\n")
    tgt = write(tmp_path / "tgt.txt", "x y\nz\n")
    cases = [
        ("count.txt", "0-0\n", 2, ["has 1 line but", "2 sentence pairs"]),
        ("malformed.txt", "0-0\n1:0\n", 2, ["'1:0'"]),
        ("negative.txt", "0--1\n0-0\n", 1, ["malformed"]),
        ("src_range.txt", "0-0 3-1\n0-0\n", 1, ["source index 3", "length 3"]),
        ("tgt_range.txt", "0-0\n1-1\n", 2, ["target index 1", "length 1"]),
    ]
    for name, text, line, fragments in cases:
        ali = write(tmp_path / name, text)
        with pytest.raises(CorpusError) as exc:
            read_parallel(src, tgt, alignments=ali)
        assert_corpus_error(exc, ali, line, *fragments)


# --------------------------------------------------------------------------- JSON lines


@pytest.mark.parametrize("name", ["pairs.jsonl", "sub/pairs.jsonl.gz"])
def test_jsonl_round_trip(tmp_path: Path, pairs: list[Pair], name: str) -> None:
    data = pairs[:50] + [Pair(("größer", "café"), ("日本",), None), Pair(["a"], ["b"], [[0, 0]])]
    path = tmp_path / name
    write_pairs_jsonl(data, path)
    assert read_pairs_jsonl(path) == data


def test_jsonl_errors(tmp_path: Path) -> None:
    cases = [
        ('{"src": ["a"], "tgt": ["b"], "align": null}\n{oops\n', 2),
        ('{"src": ["a"], "tgt": ["b"], "align": [[0, 1]]}\n', 1),
        ('\n{"src": [], "tgt": ["b"]}\n', 2),
    ]
    for k, (text, line) in enumerate(cases):
        path = write(tmp_path / f"bad{k}.jsonl", text)
        with pytest.raises(CorpusError) as exc:
            read_pairs_jsonl(path)
        assert_corpus_error(exc, path, line)
