"""faults: the filesystem layer of aofcrash — a FileSystem protocol, an in-memory disk with a
page cache over durable storage, persistence models, fault plans and a virtual clock.

Code under test (the reference server, or a real server through ``faults.fuse``) only ever sees a
``FileSystem``. The harness decides what that filesystem does wrong and what survives a crash.
Every fault is off unless a ``FaultPlan`` asks for it; one plan plus one crash choice reproduce a
run exactly (no wall clock, no global random state anywhere in this package).

FileSystem
----------
``FileSystem`` is a ``typing.Protocol`` copying ``os``: open/write/read/lseek/fsync/fdatasync/
ftruncate/close/rename/unlink/mkdir/listdir/stat/exists plus ``fsync_dir(path)``. Paths are
relative to the root. Errors are real ``OSError(errno, os.strerror(errno), path)``.
``OSFileSystem(root)`` does real ``os`` calls under a directory.

SimDisk: two layers
-------------------
``SimDisk`` keeps, like a kernel page cache over a disk,

* *visible* state: what reads, ``stat`` and ``listdir`` return (namespace + file contents);
* *durable* state: what survives power loss — per inode, durable contents, and per persistence
  model, which namespace operations (create, rename, unlink, mkdir) are durable.

``fsync(fd)`` / ``fdatasync(fd)`` make the inode's visible contents durable (both flush data).
What they and ``fsync_dir(d)`` (or ``fsync`` of a directory fd) make durable of the namespace
depends on the filesystem, so a SimDisk keeps every model's record side by side and a crash can
be asked under any model afterwards. Every operation is appended to ``SimDisk.trace`` as a
``TraceEntry`` (index, op, path, offset, length, result); ``SimDisk.replay(trace)`` rebuilds
the disk state at every trace position, which is what the crash-state explorer walks
(``ReplayCursor`` does it step by step and can show the state of a crash inside a write,
``inside_write(k)``).

Persistence models (``PersistenceModel``)
-----------------------------------------
A model is a claim about a filesystem: ``model.filesystem`` names the real one it stands for
(None for the two bounds), ``model.describe()`` says it in one line. The three kernel models
are calibrated against the kernel's own ext4, xfs and btrfs (crash images recorded at the block
layer and mounted by the kernel, which replays its own journal): a model must allow every state
the kernel produced (else it misses bugs) and keep what the kernel kept in every state (else it
raises false alarms). Each model's rules are written at the top of the module that implements
it (``faults/_model_*.py``); in short:

``process``
    The process dies, the kernel survives: the image is the visible state, exactly. Everything
    whose ``write`` returned survives. One image per crash point.
``power-ext4`` (``POWER``, the default power model; ``PersistenceModel("power")`` is an alias,
the name reproductions used before the calibration)
    ext4 (data=ordered). Namespace operations go into one journal in program order; a *journal
    commit* makes every operation recorded so far durable, in any directory. ``fsync(fd)``
    commits when the file has something not committed (dirty data or size, or a pending
    create, rename or unlink of its inode); ``fdatasync(fd)`` only for dirty data or size or
    a pending create (``fsync(B); rename(B, C); fdatasync(C)`` may lose the rename);
    ``fsync_dir(d)`` always (a directory fsync is a forced commit on ext4: ``mkdir A/d;
    fsync_dir(B)`` keeps ``A/d``). An fsync with nothing to commit commits nothing; nor does
    one whose file was only overwritten inside its durable size (the kernel journals it only
    if its mtime changed, which depends on the clock tick: measured both ways). A
    commit makes no other file's data durable: ``create A; fsync(P)`` (P changed) keeps A,
    with its durable contents (empty for a new file).
``power-xfs`` (``POWER_XFS``)
    xfs: as ext4, except that fdatasync also commits a pending rename or unlink of the file,
    and ``fsync_dir(d)`` commits only when a pending operation changes ``d``.
``power-btrfs`` (``POWER_BTRFS``)
    btrfs's per-inode log: ``fsync``/``fdatasync`` of a file make that file's data, its create
    and renames and its new parent directories durable, not unrelated namespace operations
    (``create A; fsync(P)`` may lose A; an unrelated rename or unlink may be undone). A file
    once fsynced is logged: its later renames are durable at the next fsync that syncs the log
    (of a file or directory with something to log: ``fsync(B); rename(B, C); fsync(P)`` keeps
    C as B); an fsync of a file with nothing new does not log it. An fsync of a file renamed
    into ``d`` logs ``d``'s changes too. ``fsync_dir(d)`` makes ``d``'s changed entries
    durable, with what they name under their current names; a file renamed into ``d`` from
    another directory whose change is not logged may keep its old name too (both names).
``power-eager-metadata`` (``POWER_EAGER_METADATA``; the most optimistic, no real filesystem)
    Every namespace operation is durable when it returns (LazyFS's model); data as below.
``power-posix-metadata`` (``POWER_POSIX_METADATA``; the POSIX minimum, the most pessimistic, no
real filesystem measured here is this weak)
    A namespace operation is durable only once every directory it changes has been fsynced
    after it (*settled*; a rename needs both parents); everything unsettled may survive or not,
    independently, except that a rename survives only with the pending operation that put its
    object in its source (else the object would have two names). Entries belong to
    directories, not paths: a settled create in ``d`` is lost if ``d``'s own mkdir is not
    settled. A finding seen only under this model is reported as such. (Not a superset of
    btrfs: it never leaves a file under both names, which btrfs can; reports/calibration.md.)

Common to the power models:

* Metadata. Under the three kernel models a crash keeps every committed operation plus a
  *prefix* of the pending ones in program order (the kernel may commit in the background at
  any moment, and a commit writes everything before it): ``CrashChoice.metadata_kept`` of
  them, 0 to all (``SimDisk.pending_metadata_for(model)``). An operation whose source is not in
  the image is skipped. Under ``power-posix-metadata`` a choice may name a set that is not a
  prefix in ``CrashChoice.metadata_ops`` (positions among the
  ``SimDisk.pending_posix_metadata`` operations, program order; None with ``metadata_kept = k``
  is the first k, the form enumeration and draws give every prefix).
* Data, per inode (``faults/_inode.py``), with durable contents D, visible contents V and
  ``c`` = length of the prefix untouched since the last successful sync:

  - append-only since the sync (``c == len(D)``): the image is ``V[:L]`` for L in
    {len(D)} + {every 512-byte sector boundary strictly between len(D) and len(V)} + {len(V)}
    (kind ``PREFIX``; ``L == len(D)`` is kind ``DURABLE``). Opt-in
    (``ImageLimits(torn=True, reorder=True)``; off by default because no AOF without
    checksums can tell a damaged sector inside a value from data, so they test the file
    format's integrity checks rather than the persistence protocol): for L > len(D) the last
    sector of the image (the part of it past len(D)) may instead be torn: all zeros
    (``TORN_ZERO``) or garbage (``TORN_GARBAGE``, bytes derived from the inode and sector
    number, so deterministic). ``REORDERED``: a later sector reached the disk before an
    earlier one: ``V[:L]`` with one earlier unsynced sector (within the last
    ``ImageLimits.reorder_window_sectors`` sectors of the image) reading as zeros.
  - truncated or overwritten below len(D) since the sync (``c < len(D)``): either D
    (``DURABLE``) or ``V[:L]`` for L in {c} + {sector boundaries in (c, len(V))} + {len(V)}
    (``PREFIX``). No torn or reordered variants here (not modelled, see below).
  - synced data is never lost: D is always a prefix of the image unless the file was
    truncated below len(D) since the sync.
  - an overwrite never shortens the file: without a truncate since the sync, no image is
    shorter than len(D).
  - opt-in (``ImageLimits(size_before_data=True, in_place=True)``; the calibration turns both
    on, and so do the explorers under power-ext4, power-xfs and the POSIX minimum), measured on
    the kernel:
    ``SIZE_BEFORE_DATA``: a size the journal took before the data, over D: a write that grows
    the file inside D's last block (ext4's delayed allocation journals the new size at once,
    up to that block's end: ``append 100 B to 3000 B; fsync_dir`` gives 3000 B + 100 zeros),
    or any ftruncate (cut to that size, or zero-extended). ``IN_PLACE`` (after a truncate
    below len(D)): the durable size over the blocks as writeback leaves them before the
    journal commit (a crash inside an fsync): visible bytes in the blocks the file had,
    zeros up to the end of the block a truncate left, old data in the freed blocks.
  - a journal commit (``power-ext4``, ``power-xfs``) makes the last pending ftruncate of every
    file durable: under that model the file's DURABLE image is then the committed size (ext4:
    D with the block holding the new end as visible; xfs: D cut or zero-extended, or the
    visible bytes after a growing truncate, which xfs flushes first), prefixes start there.

Example: create ``A/f``, rename ``B/tmp`` to ``B/aof``, ``fsync_dir("B")``: under
``power-ext4`` and ``power-xfs`` the create of ``A/f`` is durable too (the commit writes the
whole journal); under ``power-btrfs`` and ``power-posix-metadata`` an image may lack ``A/f``.

Fsync failure semantics (``FsyncFailure``, a ``SimDisk`` setting)
-----------------------------------------------------------------
``linux`` (default)
    After a failed fsync the dirty range is marked clean but is NOT durable: a later successful
    fsync does not write it, so after a power loss that range reads as what the disk had there
    (zeros past the old durable length, the old durable bytes below it; the file's length is
    made durable by the later sync) — the "fsyncgate" behaviour of Linux since 4.13.
    A write to any page of the range makes that whole page dirty again (Linux writes back
    pages: the dropped bytes are still in the page cache and go out with the new ones), so a
    dropped range followed by data on the disk always ends at a page boundary. The dropped
    range is never torn or reordered.
``retry``
    The range stays dirty; a later successful fsync makes it durable.

Crash images
------------
``SimDisk.crash(model, choice) -> DiskImage`` builds the durable image after a crash;
``SimDisk.crash_choices(model, limits)`` enumerates every legal choice lazily (bounded by
``ImageLimits``; choices are tiny frozen dataclasses, an image is materialised only on demand);
``SimDisk.draw_crash_choice(model, seed)`` draws one deterministically and
``SimDisk.crash_choice_strategy(model)`` is a Hypothesis strategy over them (shrinking towards the
durable-only image). ``SimDisk.from_image(image)`` boots a new disk whose state is all durable.
A choice lists only the inodes whose image is not DURABLE. ``ImageLimits.max_dirty_files`` lets
only the most recently written dirty files vary (the others stay DURABLE); every cut-off is
counted on the ``ChoiceEnumeration`` that ``crash_choices`` returns. Under
``power-posix-metadata`` the surviving sets of pending operations can be many (3**n for n
create+rename pairs): enumeration takes the prefixes first, then the other legal sets, at most
``ImageLimits.max_metadata_subsets`` (default 256) per crash point, and counts the sets left out
in ``ChoiceEnumeration.cut_by_metadata`` (sets, not choices; ``total`` covers the sets looked
at). Draws and the strategy are not bounded by it: each pending operation whose dependency
survives survives or not (shrinking towards not). ``CrashChoice`` JSON carries
``metadata_ops`` only when it is set, so choices of the other models keep their JSON.

Inspecting a SimDisk (read-only)
--------------------------------
For tools such as the crash-state explorer; nothing here can change a disk.

* ``SimDisk.open_file(fd) -> OpenFile | None``: a frozen snapshot of an open file (path it was
  opened under, ``ino``, ``position_bytes``, readable/writable/append); on a replay,
  ``ReplayCursor.open_file(trace_fd)`` and ``ReplayCursor.replayed_fd(trace_fd)`` take the
  traced disk's fd numbers.
* ``SimDisk.inode(ino)`` / ``SimDisk.inode_at(path) -> InodeView``: a live read-only view of an
  inode: ``size_bytes``, ``read(start, stop)``, ``durable_size_bytes``, ``durable()``,
  ``durable_is_prefix``, ``dropped_ranges``, ``dirty``.
* ``SimDisk.namespace_after(metadata)``: the files of an image's namespace (immutable mapping
  path -> inode number), for a ``CrashChoice`` or a count of kept ``power-ext4`` operations;
  ``SimDisk.dirty_inodes(metadata)``: its dirty inodes in the order ``max_dirty_files`` keeps
  them; ``SimDisk.file_options(inode, limits=...)``: every legal image of one inode's data;
  ``SimDisk.metadata_choices(model, limits=...)``: the metadata outcomes ``crash_choices`` goes
  through, in its order.
* ``garbage_sector(ino, sector_index, size_bytes)``: the bytes of a ``TORN_GARBAGE`` sector (the
  one formula SimDisk uses).

Fault catalogue (``FaultPlan``)
-------------------------------
A plan is an ordered tuple of frozen dataclasses, validated at construction (every error at once,
in one ``FaultPlanError``), with a JSON round-trip (``to_json`` / ``from_json``). Matching: each
fault names the operation kind(s) it applies to, a ``path_glob`` (fnmatch on the root-relative
path; ``"*"`` matches every path), ``nth`` (1-based occurrence among matching operations) and,
where it makes sense, ``times`` (how many consecutive matching operations it applies to;
``None`` = from then on). A rename matches if its source or its target matches; an fd
operation matches the path the fd was opened under (kept current across renames made through
the wrapper). Replacing ``FaultyFileSystem.plan`` keeps the counters of faults kept at the
same index; new faults count from then on.

``ShortWrite(nth, written_bytes, path_glob)``
    The nth matching ``write`` writes only ``written_bytes`` (< len(data)) and returns that count.
    A genuine partial write: the first ``written_bytes`` bytes are in the file. (A write no
    longer than ``written_bytes`` goes through whole.)
``NoSpace(nth, times, partial_bytes, path_glob)``
    From the nth matching ``write`` on, writes fail with ENOSPC, ``times`` times (None: until the
    plan is changed). With ``partial_bytes`` the first failing write is a short write of that many
    bytes instead (as Linux does when part of the buffer fits; it counts as one of the
    ``times``), and the next ones fail.
``IOFault(op, nth, times, path_glob)``
    EIO from the nth matching operation of kind ``op`` (write, fsync, fdatasync, rename,
    fsync_dir). A failing write writes nothing; a failing fsync applies the ``FsyncFailure``
    semantics of the disk underneath.
``SlowSync(delay_ms, nth, times, path_glob)``
    The matching fsync/fdatasync takes ``delay_ms`` of virtual time (``Clock.sleep``).
``Crash(nth, op, path_glob, torn_bytes)``
    The process dies when the nth matching operation is attempted: ``SimulatedCrash`` is raised
    before the operation takes effect; with ``torn_bytes`` on a write, that many bytes of it are
    written first (a crash in the middle of ``write``). ``op=ANY`` counts every operation a fault
    can match (open, write, fsync, fdatasync, ftruncate, close, rename, unlink, mkdir,
    fsync_dir), not reads, seeks or lookups.
``KillChild(nth_rewrite, at_step)``
    The rewrite child of the nth rewrite dies at step ``at_step`` (read by the server through
    ``FaultyFileSystem.should_kill_child``).
``Damage(kind, at_permille, length_bytes, nth, path_glob)`` (opt-in: a media error)
    Damage to *synced* bytes, which no persistence model ever damages: in the crash image,
    ``length_bytes`` bytes of the ``nth`` matching file (path order, among the files that have
    synced bytes) starting ``at_permille`` thousandths (0-999) into its synced bytes read back
    flipped (``DamageKind.FLIP``: the lowest bit of each byte inverted) or zeroed
    (``DamageKind.ZERO``). It matches no operation (``FaultyFileSystem`` ignores it): it is
    applied to an image, ``damage_image(image, damage, synced_bytes(disk, model, choice))``,
    which also says where it hit (``DamageSite``; None when no file matches). Synced bytes
    are the leading bytes of an image's file equal to what the last successful sync of its
    inode made durable. Meant for stores with checksums, which must refuse or truncate at the
    damage rather than load wrong data; a file format without checksums cannot tell a flipped
    byte inside a value from data.

``FaultyFileSystem(inner, plan, clock=...)`` wraps any FileSystem and applies a plan; it records
every fault that fired (``fired``), with the inner trace index when the inner disk has a trace.
Not a fault but a guard, off by default: ``set_op_budget(n)`` allows n more calls of any kind
(reads and seeks included), then raises ``OperationBudgetExceeded`` (a BaseException), so code
that loops forever on the filesystem ends instead of hanging the harness.

Ground truth: the kernel (``faults.kernel``, ``faults.calibration``)
--------------------------------------------------------------------
The models above are claims about real filesystems; the kernel's own ext4, xfs and btrfs are
the truth they are checked against. ``faults.kernel`` (the only code here that needs root,
/dev/fuse and loop devices; not imported by this package) records one without a kernel
module: a single-threaded FUSE daemon (its own process) serves a sparse file on tmpfs, that
file backs a loop device, ``mkfs`` formats it and the kernel mounts it (``BlockRecorder.root``).
The loop device has a volatile write cache and no FUA, so every block write and every flush
reaches the daemon, which logs them in one order; ``marker(label)`` (a write to a control file
served by the same thread) puts "this call returned" into that order. A crash state at a marker
is the baseline snapshot plus every write before the last flush that precedes it plus a subset
of the writes in flight after that flush (every prefix, then seeded random subsets, bounded by
``KernelLimits``; cut-offs are counted); there is also one at every flush. The kernel mounts each
image (replaying its journal/log), the tree is read back as a ``DiskImage``, and fsck can be
asked for (a complaint is a finding about the filesystem). Every mount, loop device, daemon and
scratch directory is released on success, failure, Ctrl-C and SIGKILL (a watchdog process).
Limits: in-flight writes are dropped whole (no torn sectors inside a write), slow workloads see
the kernel's background commits, images are of small filesystems (ext4 64 MiB, xfs 300 MiB,
btrfs 256 MiB).

``faults.calibration`` runs bounded ACE-style syscall workloads (and the exact sequences of a
Redis 6 rewrite and a Redis 7 manifest update) on a kernel filesystem with a marker after every
syscall and on a SimDisk under every power model, and counts per model the *missed* states (a
tree the kernel produced that the model does not allow) and the *over-approximations* (what the
model allows to be lost that the kernel kept in every state and the program saw).
``benchmarks/calibration.py`` runs it at scale and writes ``reports/calibration.md``.

Not modelled (deliberately)
---------------------------
* A slow fsync's data is durable when the call is made; only its completion is delayed.
* Torn or reordered sectors after a truncate/overwrite below the durable length; partial sector
  writes other than "all zeros" and "garbage"; misdirected writes. (Bit rot of synced data is
  the opt-in ``Damage`` fault, not part of any model.)
* Separate durability of file size and file data beyond ``SIZE_BEFORE_DATA``, ``IN_PLACE``
  and committed truncates: fsync and fdatasync make the same data durable; they differ only in
  what they commit of the namespace (ext4).
* Time: the kernels' background commits (ext4 5 s, xfs and btrfs 30 s) are not timed; any prefix
  of the pending operations may have been committed at any moment, which allows more states than
  the kernel, with one exception: on ext4 and xfs a background commit that starts between a
  file's last change and a later namespace operation leaves that operation out of the file's
  fsync; the models commit it (without that race the kernel commits it too, as measured).
  btrfs's transaction is never over here: a file once fsynced stays logged (its later renames
  become durable at the next fsync), which holds for workloads shorter than btrfs's 30 s commit.
* ext4's ``auto_da_alloc`` (data of a file renamed over another flushed at the next commit),
  data=journal and data=writeback; xfs's flush-on-close heuristics; btrfs's early logging of
  unlinks and of directory renames (all of these keep more; the models allow losing it).
* Cross-directory rename atomicity quirks, except btrfs's measured one (above): a rename is
  one atomic metadata operation (a commit includes it whole; ``power-posix-metadata`` settles
  it once both directories are fsynced). No file under neither name.
* Under ``power-posix-metadata``: an fsync that settles a rename settles the operations it
  depends on (so a chain of renames never leaves an object under two names); directories that
  surviving renames put inside each other are unreachable (an image before fsck), nothing more.
* Hard links, symlinks, permissions, xattrs, mmap, O_DIRECT, sparse-file holes from lseek past
  EOF (a write past EOF zero-fills the gap, which is what reads would see).
"""

from __future__ import annotations

from faults._choices import ChoiceEnumeration
from faults._clock import BackgroundJob, Clock
from faults._damage import DamageSite, damage_image, synced_bytes
from faults._faulty import (
    FaultyFileSystem,
    FiredFault,
    OperationBudgetExceeded,
    SimulatedCrash,
)
from faults._fs import FileStat, FileSystem, OSFileSystem
from faults._image import (
    CrashChoice,
    CrashChoiceError,
    DiskImage,
    FileChoice,
    FsyncFailure,
    ImageKind,
    ImageLimits,
    PersistenceModel,
    garbage_sector,
)
from faults._inode import InodeView
from faults._plan import (
    Crash,
    Damage,
    DamageKind,
    Fault,
    FaultOp,
    FaultPlan,
    FaultPlanError,
    IOFault,
    KillChild,
    NoSpace,
    ShortWrite,
    SlowSync,
)
from faults._simdisk import OpenFile, ReplayCursor, SimDisk
from faults._trace import Op, Trace, TraceEntry

__all__ = [
    "BackgroundJob",
    "ChoiceEnumeration",
    "Clock",
    "Crash",
    "CrashChoice",
    "CrashChoiceError",
    "Damage",
    "DamageKind",
    "DamageSite",
    "DiskImage",
    "Fault",
    "FaultOp",
    "FaultPlan",
    "FaultPlanError",
    "FaultyFileSystem",
    "FileChoice",
    "FileStat",
    "FileSystem",
    "FiredFault",
    "FsyncFailure",
    "IOFault",
    "ImageKind",
    "ImageLimits",
    "InodeView",
    "KillChild",
    "NoSpace",
    "OSFileSystem",
    "Op",
    "OpenFile",
    "OperationBudgetExceeded",
    "PersistenceModel",
    "ReplayCursor",
    "ShortWrite",
    "SimDisk",
    "SimulatedCrash",
    "SlowSync",
    "Trace",
    "TraceEntry",
    "damage_image",
    "garbage_sector",
    "synced_bytes",
]
