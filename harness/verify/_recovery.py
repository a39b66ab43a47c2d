"""Recovering crash images with the real server binary: one image on a scratch directory
(``_recover``, in a worker process), and every distinct image of an exploration once on a
process pool, with what each recovery left behind for rule 3 (``_Recoveries``). Shared by
explore --server on the FUSE SimDisk and on the kernel's filesystems."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import redis

from faults import DiskImage
from harness._pool import stop_executor
from harness.oracle import Checker, History, Snapshot, Verdict, check_stability, snapshot_from_dump
from harness.targets._servers import (
    ServerRefusedToStart,
    ServerSpec,
    ServerStartTimeout,
    dump_keyspace_at,
    make_run_dir,
)
from harness.verify._runner import worker_init

__all__: list[str] = []


@dataclass(frozen=True)
class _Recovered:
    digest: str
    dump: Any  # the raw dump (None: refused to start)
    reason: str | None
    dump_ms: int
    after_files: dict[str, bytes] | None
    after_dirs: tuple[str, ...]
    seconds: float
    heals: bool | None = None  # after a refusal: whether the next start (no crash) came up


def _read_tree(root: str) -> tuple[dict[str, bytes], tuple[str, ...]]:
    files: dict[str, bytes] = {}
    dirs: list[str] = []
    for here, subdirs, names in os.walk(root):
        rel = os.path.relpath(here, root)
        for d in subdirs:
            dirs.append(d if rel == "." else f"{rel}/{d}")
        for name in names:
            path = name if rel == "." else f"{rel}/{name}"
            with open(os.path.join(here, name), "rb") as fh:
                files[path] = fh.read()
    return files, tuple(sorted(dirs))


def _write_tree(root: str, files: Mapping[str, bytes], dirs: Sequence[str]) -> None:
    for d in sorted(dirs):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for path, content in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(content)


#: Starts of one image, when a start lost its port to another recovery (see ``_lost_port``).
_START_ATTEMPTS = 3


def _lost_port(server: Any) -> bool:
    """Whether a server that answered PING and then refused our connection had in fact lost
    its port: it has exited and its log says the address was taken. Under load, another pool
    worker's server can take the port between the pick and the bind and answer the PING; it
    then exits with its own recovery. Seen as a false "could not be dumped: Connection
    refused" verdict of availability (FUSE and kernel explorations alike)."""
    if server.running:
        return False
    try:
        with open(server.log_path, "rb") as fh:
            log = fh.read().decode("utf-8", "replace")
    except OSError:
        return False
    return "Address already in use" in log or "Could not create server TCP" in log


def _recover(spec: ServerSpec, policy: str, extra: dict[str, str], t0: float, digest: str,
             files: dict[str, bytes], dirs: tuple[str, ...], want_after: bool) -> _Recovered:
    """Start the server on a scratch dir holding exactly the image; dump; SIGKILL; read back
    what it left (for rule 3). A start that lost its port is redone on a fresh copy."""
    started = time.monotonic()
    for attempt in range(_START_ATTEMPTS):
        root = make_run_dir("recover")
        try:
            recovered = _recover_once(spec, policy, extra, t0, digest, files, dirs, want_after,
                                      root, last=attempt == _START_ATTEMPTS - 1)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if recovered is not None:
            return replace(recovered, seconds=time.monotonic() - started)
    raise AssertionError("unreachable: the last attempt always returns")


def _recover_once(spec: ServerSpec, policy: str, extra: dict[str, str], t0: float,
                  digest: str, files: dict[str, bytes], dirs: tuple[str, ...],
                  want_after: bool, root: str, *, last: bool) -> _Recovered | None:
    """One start on `root`; None when the start lost its port and `last` is false."""
    server: Any = None
    try:
        data = os.path.join(root, "data")
        os.mkdir(data)
        _write_tree(data, files, dirs)
        server = spec.process(data, appendfsync=policy, log_path=os.path.join(root, "log"),
                              aof_load_truncated=True, extra_config=extra)
        reason: str | None = None
        dump: Any = None
        try:
            server.start()
        except (ServerRefusedToStart, ServerStartTimeout) as exc:
            tail = getattr(exc, "log_tail", None) or []
            reason = tail[-1].strip() if tail else str(exc).splitlines()[0]
        heals: bool | None = None
        if reason is not None:
            # The refusing start may have repaired the file (Valkey truncates a torn incr,
            # then refuses "not the last file"): one more start says for how long it refuses.
            try:
                server.start()
                heals = True
            except (ServerRefusedToStart, ServerStartTimeout):
                heals = False
            server.kill()
        dump_ms = int((time.monotonic() - t0) * 1000)
        if reason is None:
            try:
                dump = dump_keyspace_at(server.port, now_ms=dump_ms)
            except (OSError, ValueError, redis.exceptions.RedisError) as exc:
                if not last and isinstance(exc, OSError | redis.exceptions.ConnectionError) \
                        and _lost_port(server):
                    return None
                # It started, then could not be read (it died, or holds a type the dumper
                # does not know): reported as the reason, the image kept for a reproduction.
                reason = f"started, but its keyspace could not be dumped: {exc}"
        server.kill()
        server = None
        after: dict[str, bytes] | None = None
        after_dirs: tuple[str, ...] = ()
        if want_after and reason is None:
            after, after_dirs = _read_tree(data)
        return _Recovered(digest, dump, reason, dump_ms, after, after_dirs, 0.0, heals)
    finally:
        if server is not None:
            server.kill()


def _worker_recover(args: tuple[Any, ...]) -> _Recovered:
    return _recover(*args)


@dataclass
class _Content:
    """What the recoveries made of one image."""

    recovered: _Recovered
    snapshot: Snapshot | None
    ks: list[int] | None = None
    stable: Verdict | None = None  # rule 3 (None: not checked)


class _Recoveries:
    """Each distinct image recovered once on a pool of `workers` processes as it turns up, and
    (for rule 3) what each recovery left behind, recovered in turn; close() ends the pool."""

    def __init__(self, result: Any, workers: int, spec: ServerSpec,
                 policy: str, extra: dict[str, str], t0: float,
                 want_after: bool) -> None:
        self.result = result
        self.job = (spec, policy, extra, t0)
        self.want_after = want_after
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("fork"),
            initializer=worker_init, initargs=(os.getpid(),),
        )
        self.images: dict[str, DiskImage] = {}
        self.futures: dict[Future[_Recovered], str] = {}
        self.contents: dict[str, _Content] = {}
        self.stability_of: dict[str, str] = {}  # first digest -> what it left behind

    def submit(self, digest: str, image: DiskImage) -> Future[_Recovered]:
        self.images[digest] = image
        job = (*self.job, digest, dict(image.files), tuple(sorted(image.dirs)),
               self.want_after)
        future = self.pool.submit(_worker_recover, job)
        self.futures[future] = digest
        return future

    def drain(self, report: Callable[[str, int, int], None]) -> None:
        """Wait for every recovery (and those of what they left behind)."""
        result = self.result
        pending = set(self.futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                got = future.result()
                result.real_recoveries += 1
                snap = None if got.dump is None else snapshot_from_dump(got.dump)
                self.contents[got.digest] = _Content(got, snap)
                if got.after_files is not None:
                    after = DiskImage(got.after_files, got.after_dirs)
                    after_digest = after.digest()
                    self.stability_of[got.digest] = after_digest
                    if after_digest not in self.images:
                        result.stability_recoveries += 1
                        pending.add(self.submit(after_digest, after))
            report("recover", len(self.contents), len(self.images))

    def close(self, interrupted: bool = False) -> None:
        """End the pool: at once after the run, in bounded time after an interruption."""
        if interrupted:
            stop_executor(self.pool)
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.result.distinct_contents = len(self.images)
        self.result.refused_contents = sum(
            1 for c in self.contents.values() if c.snapshot is None)

    def match(self, history: History, tolerance: int) -> None:
        """Each recovered content's matching prefixes of `history`, and rule 3's verdict."""
        checker = Checker(history, expiry_tolerance_ms=tolerance)
        for digest, content in self.contents.items():
            snap = content.snapshot
            if snap is None:
                continue
            content.ks = checker.matching_prefixes(snap, at_ms=content.recovered.dump_ms)
            left = self.stability_of.get(digest)
            if left is not None and left != digest:
                second = self.contents[left]
                at = max(content.recovered.dump_ms, second.recovered.dump_ms)
                content.stable = check_stability(
                    snap, second.snapshot, at_ms=at, expiry_tolerance_ms=tolerance,
                    unavailable_reason=second.recovered.reason,
                )
