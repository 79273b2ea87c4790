"""The pieces under file-backed tables' crash safety: `RowIndex` (where each row's latest
logged value lies), `RedoLog` (entries appended, trusted up to the committed length,
damage detected) and the pread/pwrite row transfers (`tables/row_io.py`)."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embtable.errors import SerializationError
from embtable.tables.redo_log import RedoLog
from embtable.tables.row_index import RowIndex
from embtable.tables.row_io import read_rows, write_rows

ROWS = 1000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5000), max_size=40, unique=True), max_size=12))
def test_row_index_keeps_the_latest_offset_of_each_row(batches):
    index, expected = RowIndex(), {}
    for number, rows in enumerate(batches):
        offsets = np.arange(len(rows), dtype=np.int64) + 1000 * number
        index.put(np.array(rows, np.int64), offsets)
        expected.update(zip(rows, offsets.tolist()))
    assert len(index) == len(expected)
    queries = np.arange(5001, dtype=np.int64)
    assert index.find(queries).tolist() == [expected.get(row, -1) for row in range(5001)]
    rows, offsets = index.items()
    assert rows.tolist() == sorted(expected)
    assert offsets.tolist() == [expected[row] for row in sorted(expected)]


def entry(rng, count):
    rows = rng.choice(ROWS, count, replace=False).astype(np.int64)
    return rows, {"weight": rng.standard_normal((count, 4)).astype(np.float32),
                  "Adam": rng.standard_normal((count, 2)).astype(np.float64)}


def logged(log, rows, name, width):
    """The latest logged values of `rows` (all logged) of `name`, as `width`-byte rows."""
    offsets = log.locate(name, rows)
    assert (offsets >= 0).all()
    out = np.empty((rows.shape[0], width), np.uint8)
    read_rows(log.fd(), offsets, out, np.arange(rows.shape[0], dtype=np.int64), 2)
    return out


def test_a_log_is_trusted_up_to_its_committed_length(tmp_path, rng):
    path = str(tmp_path / "log")
    log = RedoLog(path, True, 0, ROWS)
    first_rows, first = entry(rng, 300)
    log.append(first_rows, first)
    second_rows, second = entry(rng, 200)  # some rows again: their later values win
    log.append(second_rows, second)
    committed = log.sync()
    uncommitted_rows, uncommitted = entry(rng, 100)
    log.append(uncommitted_rows, uncommitted)
    log.close()
    latest = {int(row): value for rows, block in ((first_rows, first), (second_rows, second))
              for row, value in zip(rows, block["weight"])}
    for writable in (False, True):
        reopened = RedoLog(path, writable, committed, ROWS)
        rows = np.array(sorted(latest), np.int64)
        assert reopened.items("weight")[0].tolist() == rows.tolist()
        values = logged(reopened, rows, "weight", 16).view(np.float32)
        assert values.tobytes() == np.array([latest[row] for row in rows.tolist()]).tobytes()
        assert reopened.widths == {"weight": 16, "Adam": 16}
        reopened.close()
    assert os.path.getsize(path) == committed  # the writable open cut off what was never committed


@pytest.mark.parametrize("damage", ["magic", "rows", "length", "missing", "out of range"])
def test_a_damaged_log_raises_serialization_error(tmp_path, rng, damage):
    path = str(tmp_path / "log")
    log = RedoLog(path, True, 0, ROWS)
    rows, blocks = entry(rng, 50)
    log.append(rows, blocks)
    committed = log.sync()
    log.close()
    data = bytearray(open(path, "rb").read())
    if damage == "magic":
        data[0] ^= 1
    elif damage == "rows":
        data[-(50 * 16 * 2) - 8] ^= 1  # a byte of the last row number
    if damage == "out of range":
        with pytest.raises(SerializationError, match="damaged"):
            RedoLog(path, False, committed, 10)  # a table of 10 rows
        return
    if damage == "missing":
        os.unlink(path)
    else:
        open(path, "wb").write(bytes(data[:committed - 1] if damage == "length" else data))
    with pytest.raises(SerializationError):
        RedoLog(path, False, committed, ROWS)


def test_rows_move_between_files_and_arrays_in_runs(tmp_path, rng):
    path = tmp_path / "rows"
    table = rng.integers(0, 256, (400, 24), dtype=np.uint8)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, 100 + table.nbytes)
        # consecutive in the file and the array (one run), and scattered
        places = np.concatenate([np.arange(0, 200), rng.permutation(np.arange(200, 400))]).astype(np.int64)
        write_rows(fd, 100 + 24 * places, table, places, threads=3)
        assert open(path, "rb").read()[100:] == table.tobytes()
        out = np.zeros_like(table)
        order = rng.permutation(400).astype(np.int64)
        read_rows(fd, 100 + 24 * order, out, order[::-1].copy(), threads=2)
        assert out[order[::-1]].tobytes() == table[order].tobytes()
        with pytest.raises(OSError, match="shorter"):  # past the end of the file
            read_rows(fd, np.array([100 + table.nbytes - 10], np.int64), out, np.array([0], np.int64), 1)
    finally:
        os.close(fd)
