"""Small shared helpers: atomic file and folder writes; rows shared out and gathered across processes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LaunchedProcesses",
    "atomic_directory",
    "atomic_file",
    "atomic_write_text",
    "force_cpu_processes",
    "gather_rows",
    "process_rank_and_count",
    "remove_leftovers",
    "rows_of_this_process",
    "run_folder_lock",
    "sum_over_processes",
]


def progress_bars_shown() -> bool:
    """Whether hf-ddb draws progress bars: while its logger shows INFO messages (``hf-ddb -q`` hides both)."""
    return logging.getLogger("hf_ddb").isEnabledFor(logging.INFO)


STALE_SECONDS = 3600  # a temporary folder untouched this long was left by a killed write, not one in progress


def _umask() -> int:
    """The process's file mode creation mask (read by setting it, then set back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path`` in one rename, so readers
    see the previous version or the complete new one, never a half-written file. The temporary name keeps
    the suffix (``np.savez`` and ``ModelCard.save`` go by it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix, dir=target.parent)
    os.fchmod(handle, 0o666 & ~_umask())  # as open() would create it (mkstemp's 0600 hides it from a team)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``Path(path).write_text(text)``, atomically (see `atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename.

    An interrupted write leaves ``path`` as it was (absent or the previous complete version), never
    half-written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):  # what an earlier kill left behind
        for stale in target.parent.glob(pattern):
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:  # not another process's write in progress
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # as mkdir() would create it (mkdtemp's 0700 hides it from a team)
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def force_cpu_processes() -> bool:
    """True when launched as several processes on a machine without CUDA.

    Accelerate then needs ``cpu=True`` to form a gloo process group; without it, every process under
    ``torchrun`` runs alone and they race on the same files.
    """
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _is_leftover(name: str) -> bool:
    """Names hf-ddb's atomic writes use while writing: hidden, with ``.tmp`` or ``.old-`` in them."""
    return name.startswith(".") and (".tmp" in name or ".old-" in name)


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Deletes what interrupted atomic writes left under ``folder`` (temporary files and folders); returns them.

    Call it only where no other process is writing (the runner does, on the main process, before a stage)."""
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in [d for d in dirs if _is_leftover(d)]:
            shutil.rmtree(Path(root) / name, ignore_errors=True)
            removed.append(Path(root) / name)
            dirs.remove(name)
        for name in filter(_is_leftover, files):
            (Path(root) / name).unlink(missing_ok=True)
            removed.append(Path(root) / name)
    return removed


@dataclass(frozen=True)
class LaunchedProcesses:
    """This process's place among a run's processes, as the launcher (torchrun, accelerate launch) set it in
    the environment: every process computes a stage, the main one (rank 0) writes, and with several of them
    stages synchronise."""

    rank: int = 0
    count: int = 1

    @classmethod
    def from_environment(cls) -> LaunchedProcesses:
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.count > 1


def process_rank_and_count() -> tuple[int, int]:
    """(rank, number of processes) of the torch.distributed group, (0, 1) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def leave_process_group(wait: bool = True) -> None:
    """Destroys the torch.distributed group (nothing without one), after every process reaches this point
    when ``wait`` (a process that failed must not wait: its peers may be blocked in another collective).

    Left to interpreter exit, gloo's threads are torn down while a peer may still be talking to them, and a
    process can abort ("terminate called without an active exception") after its work is done."""
    import sys

    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def rows_of_this_process(num_rows: int) -> range:
    """This process's contiguous share of ``num_rows`` rows (all of them without a process group); shares
    differ by at most one row and, concatenated in rank order, are exactly the rows in order."""
    rank, count = process_rank_and_count()
    return range(rank * num_rows // count, (rank + 1) * num_rows // count)


def gather_rows(values: Any) -> Any:
    """Concatenates every process's ``values`` (tensors with the same trailing shape, any first size) in rank
    order; ``values`` itself without a process group. No row is lost or repeated: shapes are exchanged
    first and the padding added for the exchange is removed."""
    import torch
    import torch.distributed as dist

    _, count = process_rank_and_count()
    if count == 1:
        return values
    size = torch.tensor([values.shape[0]], device=values.device)
    sizes = [torch.zeros_like(size) for _ in range(count)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *values.shape[1:]), dtype=values.dtype, device=values.device)
    padded[: values.shape[0]] = values
    parts = [torch.zeros_like(padded) for _ in range(count)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(s.item())] for part, s in zip(parts, sizes, strict=True)])


def sum_over_processes(values: Any) -> Any:
    """The element-wise sum of ``values`` over every process (a new tensor; ``values`` without a group)."""
    import torch.distributed as dist

    if process_rank_and_count()[1] == 1:
        return values
    total = values.detach().clone()
    dist.all_reduce(total)
    return total


LOCK_NAME = ".hf-ddb.lock"


class RunFolderBusyError(OSError):
    """Another hf-ddb process holds the run folder's lock."""


def _open_lock_file(path: Path) -> Any:
    """The lock file opened for reading and writing, created if absent; never through a symbolic link (a link
    planted at its name would make the lock truncate the file it points to) and only a regular file."""
    import stat

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags, 0o666)
    except OSError as err:
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link; hf-ddb writes nothing through links: remove it") from None
        raise OSError(f"cannot open the run folder's lock {path} ({err.strerror})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(f"{path} is not a regular file; remove it")
    return os.fdopen(descriptor, "r+")


@contextmanager
def run_folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock (``.hf-ddb.lock``, an OS file lock) while ``what`` runs, so two hf-ddb commands never
    write one run folder at once: the second is refused with one line naming the holder. The OS releases the
    lock when its holder exits, killed or not, so a crash never leaves the folder locked. Under several
    processes (torchrun) the main process holds it for all."""
    import fcntl
    import socket

    if not LaunchedProcesses.from_environment().is_main:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = _open_lock_file(folder / LOCK_NAME)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another hf-ddb process"
            raise RunFolderBusyError(
                f"{folder} is in use by {holder}; wait for it to finish, or give another --output-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"hf-ddb {what} (pid {os.getpid()} on {socket.gethostname()}, since {started})")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
