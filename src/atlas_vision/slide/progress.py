"""Resume state: which regions are done, as append-only per-rank logs.

``RUN_DIR/<slide>/progress/done-rank{r}.log`` gets one line ``<region index>\\n`` per region, appended (and
``fsync``-ed) only **after** that region's chunks are written; a region whose line is missing or cut short by a
SIGKILL is simply recomputed. ``failed-rank{r}.jsonl`` lists regions that could not be read (corrupt tiles).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so the next append starts a fresh line (else a cut
    ``"1"`` followed by ``"7\n"`` would read as region 17)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


class ProgressLog:
    def __init__(self, directory: Path, rank: int):
        directory.mkdir(parents=True, exist_ok=True)
        for name in (f"done-rank{rank}.log", f"failed-rank{rank}.jsonl"):
            _drop_partial_line(directory / name)
        self._done = open(directory / f"done-rank{rank}.log", "a", encoding="utf-8")  # noqa: SIM115
        self._failed = open(directory / f"failed-rank{rank}.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def mark_done(self, index: int) -> None:
        self._done.write(f"{index}\n")
        self._done.flush()
        os.fsync(self._done.fileno())

    def mark_failed(self, index: int, message: str) -> None:
        self._failed.write(json.dumps({"region": index, "error": message}) + "\n")
        self._failed.flush()
        os.fsync(self._failed.fileno())

    def close(self) -> None:
        self._done.close()
        self._failed.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_done(directory: Path) -> set[int]:
    """Indices of all regions logged done by any rank (a last line without its newline is ignored)."""
    done: set[int] = set()
    for path in sorted(directory.glob("done-rank*.log")):
        text = path.read_text(encoding="utf-8")
        for line in text.split("\n")[:-1]:  # the piece after the last newline is incomplete
            if line.strip().isdigit():
                done.add(int(line))
    return done


def read_failed(directory: Path) -> dict[int, str]:
    failed: dict[int, str] = {}
    for path in sorted(directory.glob("failed-rank*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            failed[int(item["region"])] = str(item["error"])
    return failed
