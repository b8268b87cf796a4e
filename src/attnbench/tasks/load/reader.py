"""Real-data reader: one CSV (gzip accepted) with a timestamp column, a target column and optional
numeric feature columns, all named in params.yaml (`tasks.load.data.csv`).

Policy, applied in this order and counted in the manifest:

- timestamps are parsed with `format` when given (any `pandas.to_datetime` format), else inferred;
  time-zone-aware stamps keep their wall-clock time (mixed offsets are converted to UTC);
- rows may come in any order: they are sorted by timestamp (stable);
- duplicated timestamps: the first row in file order is kept, the others are dropped;
- the series is put on a regular grid of step `freq` (default one hour) from its first to its last
  timestamp; a timestamp off that grid is an error;
- gaps (grid steps without a row) and empty cells are NOT filled: they stay missing, and every
  window whose input or target touches a missing step is skipped (the manifest counts the
  missing steps and the skipped windows).

Feature roles (pytorch-forecasting's time_varying_known_reals / time_varying_unknown_reals):
`features: {known: [...], observed: [...]}` declares which columns are known in advance (their
values at the forecast steps exist at the forecast origin: a weather forecast, a tariff, a holiday
calendar) and which are observed only (their values are used up to the forecast origin and never
over the horizon: other loads of the same transformer, measured temperature). A plain list,
`features: [a, b]`, means observed-only: a plain list says nothing about availability at forecast
time, and treating it as known would leak the future into every forecast. The calendar features
the reader adds from the timestamps are always known.

Errors name the file and the line (the header is line 1) or the column, and say what was expected:
a missing column, a value that is not a number, an unparsable timestamp, an empty or unreadable
file, a series too short for the window, horizon and splits.
"""
from __future__ import annotations

import csv
import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError, not_utf8
from .generator import CALENDAR, Series, calendar_features

_MISSING = {"", "na", "nan", "null", "none", "n/a"}


class SeriesFileError(DataError):
    """A load-forecasting CSV that cannot be used as it is."""


def _numeric(path: Path, frame: pd.DataFrame, column: str, lines: np.ndarray) -> np.ndarray:
    """A column as float64; empty / NA cells become NaN, anything else non-numeric is an error."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    blank = raw.isna() | raw.astype(str).str.strip().str.lower().isin(_MISSING)
    bad = values.isna() & ~blank
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: value {str(raw.iloc[row])!r} is not a "
                              f"number; expected a decimal number (empty cells count as missing values)")
    values = values.to_numpy(dtype=np.float64)
    if not np.isfinite(values[~np.isnan(values)]).all():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: value {str(raw.iloc[row])!r} is not "
                              "finite; expected a decimal number")
    return values


def _timestamps(path: Path, raw: pd.Series, column: str, fmt: str | None,
                lines: np.ndarray) -> tuple[pd.DatetimeIndex, str]:
    text = raw.astype(str).str.strip()
    empty = raw.isna() | text.eq("")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: the timestamp is empty; "
                              "expected a date and time on every row")
    note = "wall-clock time"
    kwargs = {"format": fmt} if fmt else {}
    try:
        parsed = pd.to_datetime(text, errors="coerce", **kwargs)
    except (ValueError, TypeError):  # mixed UTC offsets (e.g. across a DST change)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, **kwargs)
        note = "converted to UTC (mixed UTC offsets)"
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        expected = f"format {fmt!r}" if fmt else "a date and time pandas can parse (set data.csv.format to be explicit)"
        raise SeriesFileError(f"{path}: line {lines[row]}, column {column!r}: cannot parse timestamp "
                              f"{str(raw.iloc[row])!r}; expected {expected}")
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        index = index.tz_localize(None) if note == "wall-clock time" else index.tz_convert(None)
    return index, note


def _text(path: Path) -> str:
    """The decoded file (gzip detected by its magic bytes); undecodable bytes name their line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SeriesFileError(f"{path}: file not found; expected a CSV file (tasks.load.data.csv.path)") from None
    except OSError as exc:
        raise SeriesFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise SeriesFileError(f"{path}: corrupt gzip data ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeriesFileError(f"{path}: {not_utf8(exc)}") from None


def _check_field_counts(path: Path, text: str, delimiter: str) -> None:
    """Every non-blank row has as many fields as the header (pandas would pad a short row silently)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        for row in reader:
            if header is not None and any(cell.strip() for cell in row) and len(row) != len(header):
                raise SeriesFileError(f"{path}: line {reader.line_num}: {len(row)} fields, expected {len(header)} "
                                      f"as in the header ({delimiter.join(header)})")
    except csv.Error as exc:
        raise SeriesFileError(f"{path}: line {reader.line_num}: not a readable CSV row ({exc})") from None


def declared_features(features) -> tuple[list[str], list[bool]]:
    """(column names, known flags) of `csv.features`: a mapping {known: [...], observed: [...]} (known
    columns first), or a plain list, whose columns are observed-only (see the module docstring)."""
    if not features:
        return [], []
    if isinstance(features, dict):
        known, observed = list(features.get("known") or []), list(features.get("observed") or [])
        return [*known, *observed], [True] * len(known) + [False] * len(observed)
    return list(features), [False] * len(features)


def read_csv(spec: dict, *, min_steps: int = 0) -> Series:
    """Read `spec` (path, timestamp, target, features, format, freq, delimiter) into a regular Series.

    `min_steps` is the shortest usable grid (window + horizon + splits); shorter is an error."""
    path = Path(spec["path"])
    ts_col, target = spec["timestamp"], spec["target"]
    features, known = declared_features(spec.get("features"))
    wanted = [ts_col, target, *features]
    delimiter = spec.get("delimiter", ",")
    text = _text(path)
    if len(delimiter) == 1:
        _check_field_counts(path, text, delimiter)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise SeriesFileError(f"{path}: the file is empty; expected a header line and one row per time step") from None
    except pd.errors.ParserError as exc:
        raise SeriesFileError(f"{path}: not a readable CSV file: {str(exc).strip()}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in wanted:
        if column not in frame.columns:
            raise SeriesFileError(f"{path}: line 1 (header): column {column!r} not found (named in tasks.load.data.csv); the header has "
                                  f"columns: {', '.join(map(repr, frame.columns))}")
    if len(set(wanted)) != len(wanted):
        raise SeriesFileError(f"{path}: a column is named twice among timestamp, target and features: {wanted}")
    blank_rows = frame.apply(lambda col: col.astype(str).str.strip().eq("")).all(axis=1)
    frame = frame[~blank_rows.to_numpy()]
    if not len(frame):
        raise SeriesFileError(f"{path}: no data rows under the header; expected one row per time step")
    lines = frame.index.to_numpy() + 2  # the line in the file of each row (the header is line 1)
    frame = frame.reset_index(drop=True)
    time, tz_note = _timestamps(path, frame[ts_col], ts_col, spec.get("format"), lines)
    values = {c: _numeric(path, frame, c, lines) for c in [target, *features]}

    order = np.argsort(time.to_numpy(), kind="stable")
    unsorted = int((np.diff(time.to_numpy().astype("datetime64[ns]").astype(np.int64)) < 0).sum())
    time = time[order]
    values = {c: v[order] for c, v in values.items()}
    dup = time.duplicated(keep="first")
    duplicates = int(dup.sum())
    time = time[~dup]
    values = {c: v[~dup] for c, v in values.items()}

    step = spec.get("freq", "h")
    freq = pd.Timedelta(pd.tseries.frequencies.to_offset(step))
    offsets = (time - time[0]) / freq
    off_grid = np.flatnonzero(offsets != np.round(offsets))
    if len(off_grid):
        i = int(off_grid[0])
        raise SeriesFileError(f"{path}: timestamp {time[i]} is not on the grid of step {step!r} that "
                              f"starts at {time[0]}; expected one row every step {step!r} (set data.csv.freq)")
    grid = pd.date_range(time[0], time[-1], freq=freq)
    position = np.round(offsets).astype(np.int64)
    load = np.full(len(grid), np.nan)
    load[position] = values[target]
    feats = np.full((len(grid), len(features)), np.nan)
    for j, c in enumerate(features):
        feats[position, j] = values[c]
    if len(grid) < min_steps:
        raise SeriesFileError(f"{path}: the series is too short: {len(grid)} steps of {step!r} from {grid[0]} to "
                              f"{grid[-1]}; expected at least {min_steps} steps for the window, horizon and the "
                              "train/valid/test splits")
    empty_cells = int(np.isnan(load[position]).sum() + np.isnan(feats[position]).sum())
    all_features = np.column_stack([feats, calendar_features(grid)])
    names = [*features, *CALENDAR]
    for c in CALENDAR:
        if c in features:
            raise SeriesFileError(f"{path}: feature column {c!r} clashes with a calendar feature the reader adds; "
                                  "rename the column")
    truth = {"rows": int(len(frame)), "unsorted_rows": unsorted, "duplicates_dropped": duplicates,
             "missing_steps": int(len(grid) - len(time)), "empty_cells": empty_cells,
             "timestamps": tz_note, "freq": step}
    return Series(time=grid, load=load, features=all_features, feature_names=names,
                  irrelevant=[False] * len(names), truth=truth, known=[*known, *[True] * len(CALENDAR)])

