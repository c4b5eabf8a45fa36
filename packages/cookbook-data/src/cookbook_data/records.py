"""JSONL files of records: append-only writing, validated reading, and the "done ids" view for resuming.

A job that crashes must lose nothing it already wrote and must be able to pick up where it stopped.
Writers therefore append each record as one complete line in a single ``write`` on a file opened with
``O_APPEND``; the only damage a crash can leave is a torn last line, which the next writer moves aside
(into ``<file>.torn``, with a warning) before appending, and which readers skip with a warning.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ValidationError

from cookbook_data.schemas import describe_validation_error

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)


class RecordFileError(ValueError):
    """A line of a record file that is not a valid record; the message names the file, line and field."""


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """Yield (line number, text, is_complete) for each non-blank line; the last one may be torn, even inside a
    character (records are UTF-8), which only the last line may be. A UTF-8 byte order mark opening the file
    (editors on Windows write one) is not part of the first line."""
    with path.open("rb") as handle:
        for number, read in enumerate(handle, start=1):
            raw = read.removeprefix(codecs.BOM_UTF8) if number == 1 else read
            complete = raw.endswith(b"\n")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if complete:
                    raise RecordFileError(f"{path}:{number}: not UTF-8 text ({error.reason})") from None
                line = raw.decode("utf-8", errors="replace")  # torn mid-character: skipped as torn below
            if line.strip():
                yield number, line, complete


def read_records(path: str | os.PathLike[str], model: type[R]) -> Iterator[R]:
    """Read and validate every record of a JSONL file.

    Raises :class:`RecordFileError` naming ``file:line`` and the offending field for a bad line. A torn
    final line (a crash while writing) is skipped with a warning rather than failing the whole file.
    """
    path = Path(path)
    for number, line, complete in _lines(path):
        try:
            yield model.model_validate_json(line)
        except ValidationError as error:
            if not complete:
                log.warning("%s:%d: skipping a torn final line (the writer was interrupted)", path, number)
                return
            raise RecordFileError(f"{path}:{number}: {describe_validation_error(error)}") from None


def done_ids(
    path: str | os.PathLike[str], key: str = "sample_id", *, unless: Callable[[dict[str, Any]], bool] | None = None
) -> set[str]:
    """Ids already present in a record file, so a rerun can skip them. A missing file means none. Lines (parsed
    JSON objects) for which ``unless`` holds do not count: their items are done again (an error type the user
    can mend, a record the rerun's settings ask more of)."""
    path = Path(path)
    if not path.exists():
        return set()
    ids: set[str] = set()
    for number, line, complete in _lines(path):
        try:
            record = json.loads(line)
            value = record[key]
        except (json.JSONDecodeError, KeyError, TypeError):
            if not complete:
                break
            raise RecordFileError(f"{path}:{number}: no `{key}` in this line") from None
        if unless is None or not unless(record):
            ids.add(str(value))
    return ids


def differing_fields(copies: Sequence[Mapping[str, Any]]) -> list[str]:
    """The top-level fields (sorted) whose values are not the same in every one of ``copies``, records that share an
    id; empty when the copies are identical. A stage keeps one of identical copies, and none of copies that differ:
    which of them is right cannot be told, and the one kept must not depend on the order of the lines."""
    fields = sorted({name for copy in copies for name in copy})
    return [name for name in fields if len({json.dumps(copy.get(name), sort_keys=True) for copy in copies}) > 1]


def _set_aside_torn_tail(path: Path) -> None:
    """Move an incomplete last line into ``<file>.torn`` so appending starts on a line boundary."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        torn = path.with_name(path.name + ".torn")
        with torn.open("ab") as aside:
            aside.write(data[keep:] + b"\n")
        handle.truncate(keep)
    log.warning("%s: moved an incomplete last line to %s before appending", path, torn)


class JsonlWriter(Generic[R]):
    """Appends records of one type to a JSONL file, one whole line per ``write`` call.

    ``fsync=True`` also forces each line to disk (survives power loss, costs a disk flush per record).
    """

    def __init__(self, path: str | os.PathLike[str], model: type[R], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.model = model
        self._fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _set_aside_torn_tail(self.path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: R) -> None:
        """Append one record; it is on its way to disk when this returns."""
        if not isinstance(record, self.model):
            raise TypeError(f"{self.path}: expected {self.model.__name__}, got {type(record).__name__}")
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        data = (record.model_dump_json() + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._fsync:
            os.fsync(self._fd)

    def write_all(self, records: Iterable[R]) -> int:
        """Append many records; returns how many were written."""
        count = 0
        for record in records:
            self.write(record)
            count += 1
        return count

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_records(path: str | os.PathLike[str], model: type[R], records: Iterable[R]) -> int:
    """Write a whole JSONL file of records (a derived output, replaced on rerun): written beside ``path`` and
    renamed into place, so a crash leaves either the old file or the new one, never half of one. Returns the
    number of records written."""
    target = Path(path)
    staging = target.with_name(f".{target.name}.partial")
    staging.unlink(missing_ok=True)
    with JsonlWriter(staging, model) as writer:
        count = writer.write_all(records)
    staging.replace(target)
    return count
