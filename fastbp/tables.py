"""Reading a user's table for the command line: CSV, Parquet or ``.npz``, without a Python loop per line.

CSV and Parquet go through pyarrow's C++ readers (CSV falls back to pandas where pyarrow is missing); the
text is read once. Feature columns must be numeric: a text column is refused by name, never encoded behind
the user's back. Writing predictions uses pyarrow's CSV writer where available.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = (".csv", ".parquet", ".npz")


class TableError(ValueError):
    """A table that cannot be used as it is (unknown format, missing or non-numeric columns, missing values)."""


@dataclass
class Table:
    """Columns of a table: names in file order, each a 1-D numpy array."""

    names: list[str]
    columns: dict[str, np.ndarray]

    def features(self, names: list[str], dtype) -> np.ndarray:
        """The named columns as one C-contiguous 2-D array; refuses missing or non-numeric columns by name."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise TableError(f"the table has no column {', '.join(map(repr, missing[:5]))}")
        text = [n for n in names if self.columns[n].dtype.kind not in "biuf"]
        if text:
            raise TableError(
                f"feature column {', '.join(map(repr, text[:5]))} is not numeric: encode it before training "
                "(fastbp does not guess an encoding)"
            )
        X = np.empty((len(self.columns[names[0]]) if names else 0, len(names)), dtype=dtype)
        for j, name in enumerate(names):
            X[:, j] = self.columns[name]
        if not np.isfinite(X).all():
            bad = [n for j, n in enumerate(names) if not np.isfinite(X[:, j]).all()]
            raise TableError(f"column {', '.join(map(repr, bad[:5]))} has missing or non-finite values")
        return X


def read_table(path: str | Path) -> Table:
    """Read a CSV (header row), Parquet or ``.npz`` (arrays ``X`` and optionally ``y``) file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Table
        For ``.npz``, columns ``x0 .. x{d-1}`` and ``y`` if present.

    Raises
    ------
    TableError
        Unknown extension, unreadable content, or a reader that is not installed.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet
        except ImportError:
            raise TableError("reading Parquet needs pyarrow: pip install 'fastbp[tables]'") from None
        return _from_arrow(pyarrow.parquet.read_table(path))
    if suffix == ".csv":
        return _read_csv(path)
    raise TableError(f"unknown table format {path.suffix!r}: use one of {', '.join(FORMATS)}")


def _read_csv(path: Path) -> Table:
    try:
        import pyarrow.csv
    except ImportError:
        pyarrow = None
    if pyarrow is not None:
        try:
            return _from_arrow(pyarrow.csv.read_csv(path))
        except pyarrow.ArrowInvalid as error:
            raise TableError(f"cannot read {path.name} as CSV: {error}") from None
    try:
        import pandas
    except ImportError:
        raise TableError("reading CSV needs pyarrow or pandas: pip install 'fastbp[tables]'") from None
    frame = pandas.read_csv(path)
    return Table([str(c) for c in frame.columns], {str(c): frame[c].to_numpy() for c in frame.columns})


def _from_arrow(table) -> Table:
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        array = column.to_numpy(zero_copy_only=False)
        if column.null_count:  # missing numbers come back as NaN (refused for features), missing text as None
            array = np.asarray(array, dtype=float if array.dtype.kind in "biuf" else object)
        columns[str(name)] = array
    return Table(list(columns), columns)


def _read_npz(path: Path) -> Table:
    with np.load(path, allow_pickle=False) as archive:
        if "X" not in archive.files:
            raise TableError(f"{path.name} holds {archive.files}; an .npz table needs an array X (and y)")
        X = archive["X"]
        y = archive["y"] if "y" in archive.files else None
    if X.ndim != 2:
        raise TableError(f"X in {path.name} must be 2-D, got shape {X.shape}")
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    if y is not None:
        if y.shape[0] != X.shape[0]:
            raise TableError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        columns["y"] = y
    return Table(list(columns), columns)


def write_predictions(path: str | Path | None, columns: dict[str, np.ndarray], out) -> None:
    """Write named columns as CSV to ``path``, or to the text stream ``out`` when ``path`` is None."""
    try:
        import pyarrow
        import pyarrow.csv
    except ImportError:
        pyarrow = None
    if pyarrow is not None:
        table = pyarrow.table({k: v.astype(str) if v.dtype.kind in "OMm" else v for k, v in columns.items()})
        if path is None:
            sink = pyarrow.BufferOutputStream()
            pyarrow.csv.write_csv(table, sink)
            out.write(sink.getvalue().to_pybytes().decode())
        else:
            pyarrow.csv.write_csv(table, str(path))
        return
    import csv

    with open(path, "w", newline="") if path is not None else contextlib.nullcontext(out) as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows(zip(*(v.tolist() for v in columns.values())))
