"""The oracle: history, independent model, contract checker, violation reports.

The bottom layer of harness: it imports nothing of harness outside this package, nor faults or
reference (it judges keyspace dumps, whoever produced them). ``_snapshot`` (canonical
keyspaces), ``_history`` (entries and outcomes), ``_model`` (an independent model of the
command set) and ``_checker`` (the contract below, frontier and prefix search, reports). A new
rule of the contract goes in this docstring first, then in ``_checker``.

THE CONTRACT (written here once; harness/oracle/_checker.py implements exactly this)
===================================================================================

History
-------
A ``History`` records every write submitted, in the order the server executed it, with its
outcome: ``ok`` (a reply was received, at ``ack_ms``), ``error`` (refused, e.g. MISCONF or
EXECABORT; it must have had no effect) or ``unknown`` (no reply before the crash). A MULTI/EXEC
block is one entry (its commands without MULTI/EXEC); SELECT is not an entry but the entry's
``db``; reads are not entries. Each entry has ``executed_ms``, the virtual time it executed.

The *executed sequence* e_1..e_n is every entry whose outcome is not ``error``, in order
(``unknown`` entries are in it: they may or may not have reached the file). k and F below
count positions in this sequence, not history indices.

``S(k)`` is the keyspace after applying e_1..e_k to an empty keyspace through the model, each
entry at its own ``executed_ms`` (so relative expiries and lazy expiry behave as they did live),
then evaluated at the recovery time T: a key whose ``expire_at_ms <= T`` is absent.

Rules, after a crash at ``crash_ms`` and a recovery at ``recovery_ms`` = T, for policy P and
persistence model M (``process``, or one of the power models ``power-ext4`` (alias ``power``),
``power-xfs``, ``power-btrfs``, ``power-eager-metadata`` and ``power-posix-metadata``, which
differ only in which metadata survives; and ``ext4``, ``xfs``, ``btrfs``: a power loss on the
real kernel's filesystem, whose crash images the kernel itself mounted, judged as power models):

1. Prefix consistency (every P, M). The recovered keyspace R (keys already expired at T
   ignored) equals ``S(k)`` for some k in 0..n. Otherwise the violation is ``phantom`` when
   some differing key holds a value that no prefix ever gives it but that appears when the
   refused (``error``) entries are applied too — the effect of a refused write; else it is
   ``prefix-consistency`` (a hole, a reordering, half a transaction, a value from nowhere, or
   a mix of two prefixes). PHANTOM is a named case of rule 1 so the report can name the
   refused entry responsible.

2. Durability frontier. Some matching k satisfies k >= F, where F is the largest position p
   whose entry e_p must survive (0 if none; everything before e_p must survive with it, by
   rule 1). An entry must survive iff its outcome is ``ok`` and:

   - P = ``always``: always (every M);
   - P = ``everysec``: ``ack_ms <= crash_ms - W`` (acknowledged at least W before the crash;
     exactly W before counts), every M. Redis may postpone the AOF write by up to 2 s while a
     background fsync is pending and still reply, so this holds under ``process`` too;
   - P = ``no``: M = ``process``: always; M = power: never (F = 0);
   - with ``no-appendfsync-on-rewrite yes`` and M = power, an entry with ``during_rewrite``
     (executed or acknowledged while a rewrite child ran) has only the ``no`` promise: it never
     has to survive (it still counts for prefix consistency).

   W = ``window_ms`` (default 2000) plus stalls. A stall is an interval
   ``[start_ms, start_ms + delay_ms)``. Stalls are serial, as fsyncs are (one background
   thread, one device queue): a stall that fires while an earlier one still runs (two slow
   faults on one fsync, or an fsync queued behind a slow one) starts when that one ends.
   Every stall overlapping ``[crash_ms - W, crash_ms]`` adds its whole ``delay_ms`` to W,
   repeated to a fixed point (a widened window can take in an earlier stall). Two kinds of
   stall, with different reach:

   - an injected fsync stall (``stalls``) widens W under power models only. A stalled fsync
     delays the durability of what it covers and the next fsync by its full length, so the
     whole delay is granted even when only part overlaps. After a process crash only what
     was written counts, and a correct server writes its buffer within its 2 s postponement
     however slow fsync is: widening W there would forgive a server that keeps acknowledged
     writes in memory. Under ``process`` a stall therefore widens W by at most one cron
     period (100 ms): the postponed buffer is written at the first event-loop iteration past
     the limit, so a crash at that very write may still lose it.
   - an injected I/O error on the persistence path (a failed write, short write, ENOSPC,
     failed fsync/fdatasync/rename/fsync_dir; ``error_stalls``) counts as a stall of one
     retry period, ``ERROR_STALL_MS`` = 1000 ms, starting when it fired, under every model:
     the server can only retry once per cron second, a failing write keeps the buffer in
     memory, and what a failing device refused cannot be durable until a retry succeeds. A
     defect that never recovers durability, such as clearing an fsync error without
     rewriting, still loses data outside any widened window.

   When several k match, the verdict reports the largest. When the largest matching k is
   below F, the violation is ``durability``: its diff compares R with ``S(F)`` and it lists the
   lost entries.

3. Stability. Recovering the recovered state again (a second crash, no new writes) gives the
   same keyspace (compared at one time if ``at_ms`` is given). A second recovery that refuses
   to start is a stability violation: the first recovery accepted that state.

4. Availability. A server that refuses to start after a crash (recovered = None, with
   ``unavailable_reason``) is an ``availability`` violation by default: it wrote that file
   itself, the crash was legal, and a human must now repair the file before the data comes
   back. When it had acknowledged writes the violation says so ("acknowledged N write(s),
   then refused to start"). Two exceptions give outcome ``unavailable`` with ``ok == True``:
   the crash image carries damage the user asked for (``damaged_image``: torn or reordered
   sectors, where refusing is the right answer for a file without checksums), or the caller
   opts out (``allow_unavailable``, the CLI's ``--allow-unavailable``).

5. Damage (only for a target that declares itself *checksummed*, and only on images whose
   synced bytes a ``Damage`` fault flipped or zeroed: a media error, opt-in). Such a target
   must refuse to start or load a prefix: R equals ``S(k)`` for some k in 0..n, whatever k
   (the damaged record and everything after it may be lost: durability is not judged on a
   damaged image, nor is refusing to start an availability violation). Loading wrong data is
   the violation ``damage``: a value from nowhere, a record skipped in the middle, anything
   no prefix gives (the diff is against the closest prefix). Rules 1, 2 and 4 are not applied
   to such an image; rule 3 (stability) still is. A target that does not declare itself
   checksummed is never given damaged images (a file format without checksums cannot tell a
   flipped byte inside a value from data): its damage runs are skipped, with one line saying
   why. Not judged: how much a truncating target keeps before the damage (a target that drops
   the whole log on any damage passes this rule).

Modelling choices that shape a verdict
--------------------------------------
Each of these decides a verdict somewhere; each is a choice, written here so a reader can
disagree with it.

* *Acknowledged* means the client read a reply (``ok``, at ``ack_ms``, taken after the read:
  lenient). What an acknowledgement promises depends on the policy, and only that promise is
  checked: ``always`` promises the entry is on disk (Redis writes, fdatasyncs, then replies),
  so every acknowledged entry must survive every crash under every model; ``everysec``
  promises it within W (rule 2: acknowledged at least W before the crash); ``no`` promises
  only that the process wrote it (a power loss may take everything). An entry without a
  reply (``unknown``) may or may not survive; a refused one (``error``) must not.
* A crash is *legal* when the image is one the persistence model allows. The models say which
  filesystem they stand for: ``process`` (the process dies, the kernel survives),
  ``power-ext4``/``power-xfs``/``power-btrfs`` (calibrated against the kernel's own
  filesystems), ``power-posix-metadata`` (the POSIX minimum: a create or rename is durable
  only after an fsync of its directory; no real filesystem measured here is that weak, so a
  loss seen only there is reported as such) and ``power-eager-metadata`` (every namespace
  operation durable at once: the optimistic bound). See "Persistence models" below.
* EIO zero-fill. After a failed fsync the models follow Linux (``faults.FsyncFailure.LINUX``,
  the default): the range that failed to reach the disk is marked clean but is not durable,
  and a later successful fsync does not write it again. Linux drops the dirty state of pages
  whose writeback failed (reported once per open file since 4.13: "fsyncgate"), while a later
  fsync still makes the file's new length durable. After a power loss the range therefore
  reads as the disk had it: zeros past the old durable length (blocks never written read as
  zeros), the old bytes below it. Linux writes back pages, not bytes: a later write into a
  page of the range makes that whole page dirty again (its dropped bytes are still in the
  page cache), so only the pages no later write touched stay dropped. A failed fsync whose
  range crosses a page boundary, followed by appends that reach the disk, thus becomes a
  *hole of zeros* in the middle of the AOF, ending at a page boundary, not a shorter file
  (Redis 6.0 ignores the error and keeps appending); when no append follows (6.2+ refuse
  writes after a failed everysec fsync, and nothing appends to an old incr file again) the
  file's new length still reaches the disk and the AOF ends in the dropped zeros. The Redis
  and Valkey versions of reports/findings-redis.md refused to start on both ("Bad file
  format"), which is the availability rule, instead of loading a prefix and losing the rest
  silently. With ``FsyncFailure.RETRY`` (a filesystem that keeps the pages dirty) the later
  fsync would write the range and nothing would be lost: verdicts under EIO faults hold for
  Linux only. Checked on the kernel's own ext4, xfs and btrfs (a media error under the
  filesystem: ``BlockRecorder.fail_writes_containing`` fails the block writes of one append's
  pages): the fsync returns EIO and commits nothing, the next one succeeds and commits the
  new length, and the crash image holds zeros where the failed pages were, with the later
  append after them; the claiming models allow exactly that image
  (``tests/test_kernel.py``).
* *Unavailable* is a start that fails: the process exits during start-up, or does not answer
  PING within the start timeout. It is the availability rule (4) whatever happens next, since
  a legal crash left a file the server itself refuses. For how long it refuses is reported:
  the real-server runs (``aofcrash verify``, ``explore --server``) start it once more, without
  a crash in between, on what the refusing start left. A refusal that heals then (Valkey
  truncates a torn incr file and refuses "not the last file", then starts on the next try) is
  reported as lasting one start only, with what the next start recovered; one that does not
  heal needs a human. Refusing on a damaged image the user asked for is not a violation (the
  ``damaged_image`` exception).
* The everysec window W is the contract's 2 s plus a scheduling margin (500 ms by default in
  the real-server runs) and the stalls of rule 2: it errs on the lenient side, so a
  durability violation under ``everysec`` is a loss of something acknowledged well over 2 s
  before the crash.

Outside the contract: the state machines also check, on the bundled reference only, liveness
(a rewrite ends and, with no fault armed, replaces the AOF; writes are accepted again once
every fault is cleared) and that ``reference.check_aof`` agrees with the loader on each crash
image. Those are progress and tooling checks, not crash consistency; campaigns report them as
``liveness`` and ``check-aof`` findings (harness/machine/_rules.py). For any target, a step
that makes a million filesystem calls or runs 5 s of CPU time is a ``liveness`` finding too
(TargetRunaway, harness/machine/_driver.py), and so, in the explorer, is a recovery that runs
that long without finishing (ExploreRunaway): a loop that never ends, not a hung run.

Real servers: their expiry times are re-derived from relative TTLs, so
``expiry_tolerance_ms`` lets expiry times differ by up to that much and lets a key whose
expiry lies within it of T be present or absent.

Reports
-------
A ``Violation`` names the rule, the crash (``CrashInfo``: model, image choice, trace index,
crash time), the frontier, the closest k (fewest differing keys; ties go to the largest k) and a
key-level diff (expected at ``S(diff_k)`` vs recovered); ``render()`` is for a terminal,
``to_dict()`` for JSON. Bytes in JSON are latin-1 strings (one code point per byte).

How k is found fast
-------------------
The model replays the executed sequence once into a change log (per entry: the keys it changed,
old and new values). For a recovery time T, one pass over the log gives the hash of ``S(k)@T``
for every k (sum of per-key hashes mod 2**64; an entry updates only the keys it changed, a value
expired at T contributes nothing) and a table hash -> ks. A check hashes R, looks it up and
confirms each candidate exactly (same key count, every key equal to its value at k by bisection
into per-key change lists). Tables are cached per T and reused for any T' with no expiry time
between T and T', and both the replay and the tables are extended when the history grows.
A prefix confirmed twice is kept materialised (crash images tend to recover to the same few
prefixes), so confirming it again is one dict comparison. A hash miss is never trusted on its
own: the exact per-key pass over the change log decides, so a collision or a miss can cost time
but never a wrong verdict. Only a violation (or a miss) costs that pass, which also finds the
closest k. With ``expiry_tolerance_ms > 0`` every check makes the pass (exact hashing cannot
express a tolerance).
"""

from __future__ import annotations

from harness.oracle import _checker
from harness.oracle._checker import *  # noqa: F403
from harness.oracle._history import Entry, History, Outcome
from harness.oracle._model import Model, ModelState, Reply, ReplyError, UnsupportedCommand
from harness.oracle._snapshot import KeyValue, Snapshot, snapshot_from_dump

#: How long one injected persistence-path I/O error widens the everysec window (rule 2).
ERROR_STALL_MS = 1000

__all__ = [
    *_checker.__all__,
    "ERROR_STALL_MS",
    "Entry",
    "History",
    "KeyValue",
    "Model",
    "ModelState",
    "Outcome",
    "Reply",
    "ReplyError",
    "Snapshot",
    "UnsupportedCommand",
    "snapshot_from_dump",
]
