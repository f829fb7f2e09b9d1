"""Writers for the contract formats, byte-for-byte deterministic for a given world.

- parquet (records/): pyarrow with the schema derived from the contract, streamed by chunk.
- CSV: ISO dates, contract column order.
- SPSS .sav: value labels, variable labels and user-missing codes from the contract; readstat
  stamps the creation date and time into the header, which we overwrite with a fixed value.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyreadstat

from sicp.contract import SOURCES, Source

_ARROW = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "bool": pa.bool_(),
}
#: Offset and fixed content of the SAV header's creation date (9 bytes) and time (8 bytes).
_SAV_STAMP = (92, b"01 Jan 2000:00:00")


def arrow_schema(src: Source) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW[c.dtype], nullable=c.nullable) for c in src.columns])


def conform(df: pd.DataFrame, src: Source) -> pd.DataFrame:
    """Contract columns in contract order with contract dtypes (dates as datetime64[s]); an
    optional column the frame lacks is written empty."""
    out = {}
    for c in src.columns:
        if c.optional and c.name not in df:
            s = pd.Series([None] * len(df), index=df.index, dtype=object)
        else:
            s = df[c.name]
        if c.dtype == "date":
            out[c.name] = pd.to_datetime(s).astype("datetime64[s]")
        elif c.dtype == "int":
            out[c.name] = s.astype("int64")
        elif c.dtype == "float":
            out[c.name] = s.astype("float64")
        elif c.dtype == "bool":
            out[c.name] = s.astype(bool)
        else:
            out[c.name] = s.astype(object)
    return pd.DataFrame(out).reset_index(drop=True)


def _table(df: pd.DataFrame, src: Source) -> pa.Table:
    cols = []
    for c in src.columns:
        s = df[c.name]
        if c.dtype == "date":
            cols.append(
                pa.array(s.to_numpy().astype("datetime64[D]"), type=pa.date32(), from_pandas=True)
            )
        else:
            cols.append(
                pa.array(s.where(s.notna(), None) if c.nullable else s, type=_ARROW[c.dtype])
            )
    return pa.Table.from_arrays(cols, schema=arrow_schema(src))


class ParquetStream:
    """Append chunks of one source to a parquet file (bounded memory at GM scale)."""

    def __init__(self, path: Path, src: Source) -> None:
        self.src = src
        self.writer = pq.ParquetWriter(path, arrow_schema(src), compression="zstd")
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        self.writer.write_table(_table(conform(df, self.src), self.src), row_group_size=1 << 20)
        self.rows += len(df)

    def close(self) -> None:
        self.writer.close()


def write_csv(df: pd.DataFrame, path: Path, src: Source) -> int:
    data = conform(df, src)
    data.to_csv(path, index=False, date_format="%Y-%m-%d", lineterminator="\n")
    return len(data)


def write_sav(df: pd.DataFrame, path: Path, src: Source) -> int:
    data = conform(df, src)
    formats, labels, missing = {}, {}, {}
    for c in src.columns:
        if c.dtype == "date":
            data[c.name] = data[c.name].astype("datetime64[ns]")
            formats[c.name] = "DATE11"
        elif c.dtype == "int":
            data[c.name] = data[c.name].astype("float64")
            formats[c.name] = "F8.0"
        if c.value_labels:
            labels[c.name] = {float(k): v for k, v in c.value_labels.items()}
        if c.missing_codes:
            missing[c.name] = [float(k) for k in sorted(c.missing_codes)]
    pyreadstat.write_sav(
        data,
        str(path),
        file_label=src.description[:64],
        column_labels={c.name: c.label for c in src.columns},
        variable_value_labels=labels,
        missing_ranges=missing,
        variable_format=formats,
    )
    raw = bytearray(path.read_bytes())
    start, stamp = _SAV_STAMP
    raw[start : start + len(stamp)] = stamp
    path.write_bytes(bytes(raw))
    return len(data)


def write_frame(df: pd.DataFrame, path: Path, name: str) -> int:
    """Write a whole (non-streamed) source in its first contract format."""
    src = SOURCES[name]
    if path.suffix == ".sav":
        return write_sav(df, path, src)
    if path.suffix == ".parquet":
        stream = ParquetStream(path, src)
        stream.write(df)
        stream.close()
        return stream.rows
    return write_csv(df, path, src)
