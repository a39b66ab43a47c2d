"""Data images: per-inode visible and durable contents, and what of the unsynced rest a crash
under a power model may leave (the data half of every power model; the metadata half is in the
``_model_*`` modules).

The rules (also in the ``faults`` module docstring):

* ``fsync(fd)`` / ``fdatasync(fd)`` make the inode's visible contents durable. Synced data is
  never lost: the durable contents D are a prefix of every image unless the file was truncated
  or overwritten below len(D) since the sync.
* Append-only since the sync (``clean == len(D)``): the image is ``V[:L]`` for L = len(D)
  (``DURABLE``), every sector boundary strictly between len(D) and len(V), and len(V)
  (``PREFIX``). Opt-in, off by default: the last sector past len(D) torn (``TORN_ZERO``,
  ``TORN_GARBAGE``), or one earlier unsynced sector within the window reading as zeros
  (``REORDERED``).
* Truncated or overwritten below len(D) since the sync (``clean < len(D)``): D, or ``V[:L]`` for
  L from the lowest length a truncate left (len(D) without a truncate: an overwrite never
  shortens a file) over sector boundaries to len(V). No torn/reordered variants.
* Opt-in (``ImageLimits.size_before_data`` / ``in_place``; measured on the kernel):
  ``SIZE_BEFORE_DATA``: D at a size the journal took before the data (cut, or zero-extended):
  a write growing the file inside D's last block (up to that block's end) or an ftruncate.
  ``IN_PLACE`` (after a truncate below len(D)): the durable size over the blocks writeback
  leaves before the commit (visible bytes, zeros to the end of the truncate's block, old data
  in the freed blocks).
* A journal commit of ``power-ext4``/``power-xfs`` makes the last pending ftruncate durable
  under that model (``Inode.committed``): DURABLE is then that size's image (``Committed``),
  prefixes start at it, and only sizes taken after it remain.
* A range a failed fsync dropped (``FsyncFailure.LINUX``) reads as what the disk had there in
  every image (``patches``) and is never torn or reordered, until a write to one of its pages
  makes that whole page dirty again.
* A namespace commit (a journal commit, a btrfs log sync) never makes another file's data
  durable: the models keep data and metadata apart, so a name can survive with fewer bytes
  than were written (the "exists, empty" rows of the calibration table).

Representation (chosen so the append path stays O(len(data)) and fsync O(1)): an inode keeps its
visible bytes ``data``, the durable length ``dlen`` and ``clean`` = the length of the prefix
untouched since the last successful sync. While ``clean == dlen`` the durable contents are
``data[:dlen]`` and need no copy; the first write or truncate below ``dlen`` saves them in
``dsaved``. ``patches`` are ranges a failed fsync marked clean without writing: they hold what
the disk has there, and overlay both durable contents and unsynced images.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from faults._image import FileChoice, ImageKind, ImageLimits, garbage_sector

__all__ = [
    "BLOCK_BYTES",
    "Committed",
    "Inode",
    "InodeView",
    "block_end",
    "durable_image",
    "file_choice_problem",
    "file_options",
    "materialise",
]

# The filesystem block: the unit a journal's size update and a truncate's zeroing work in.
BLOCK_BYTES = 4096
# At most this many SIZE_BEFORE_DATA sizes per inode between two syncs (the first ones recorded).
_MAX_SIZES = 8


class Committed(NamedTuple):
    """A truncate a journal commit made durable: under that model the file's durable image is
    ``image`` (``size`` bytes); ``SIZE_BEFORE_DATA`` sizes before ``sizes_from`` are older."""

    size: int
    sizes_from: int
    image: bytes


def block_end(length: int) -> int:
    """The end of the block that holds byte `length - 1` (0 for an empty file)."""
    return -(-length // BLOCK_BYTES) * BLOCK_BYTES


class Inode:
    """One file's contents: visible bytes over durable ones (see the module docstring)."""

    __slots__ = (
        "clean", "committed", "data", "dlen", "dsaved", "ino", "low", "patches", "sizes",
        "stamp", "trunc",
    )

    def __init__(self, ino: int, data: bytes = b"", *, durable: bool = False) -> None:
        self.ino = ino
        self.data = bytearray(data)
        self.dlen = len(data) if durable else 0
        self.clean = self.dlen
        self.dsaved: bytes | None = None
        # (start, disk bytes) ranges that a failed fsync marked clean without writing them.
        self.patches: list[tuple[int, bytes]] = []
        # Monotonic counter of the last modification (to pick the most recently written files).
        self.stamp = 0
        # Since the last sync: on-disk sizes a journal commit may have made durable before the
        # data (SIZE_BEFORE_DATA), and the lowest length a truncate left (None: no truncate down).
        self.sizes: list[int] = []
        self.low: int | None = None
        # The last truncate since the sync: (size, grew the file, its index in `sizes`).
        self.trunc: tuple[int, bool, int] | None = None
        # Per journal model (``PersistenceModel.value``): the last truncate a journal commit
        # made durable since the sync; under that model it replaces the durable image.
        self.committed: dict[str, Committed] = {}

    def synced(self) -> None:
        """The visible contents became durable (a successful fsync/fdatasync)."""
        self.dlen = self.clean = len(self.data)
        self.sizes.clear()
        self.low = None
        self.trunc = None
        self.committed.clear()

    def commit_size(self, model: str, style: str) -> None:
        """A journal commit under `model` made the last truncate durable (`style`: whose
        data goes with it, ``"ext4"`` or ``"xfs"``)."""
        if self.trunc is not None:
            size, grew, index = self.trunc
            image = self._committed_bytes(size, grew, style)
            self.committed[model] = Committed(size, index, image)

    def _committed_bytes(self, size: int, grew: bool, style: str) -> bytes:
        # Past the lowest truncate the old blocks are gone: zeros (or data written since).
        durable = self.durable()[: self.low]
        if style == "xfs" and not grew:
            head = durable[:size]  # xfs: the durable data at the new size
            return head + bytes(size - len(head))
        # ext4: the block holding the new end is written with the commit (the truncate zeroed
        # its tail in the page cache, an ordered write); xfs: a growing truncate flushes first.
        start = 0 if style == "xfs" else max(0, size - 1) // BLOCK_BYTES * BLOCK_BYTES
        head = durable[:start]
        head += bytes(start - len(head))
        tail = bytes(self.data[start:size])
        return self.overlay(head + tail + bytes(size - start - len(tail)))

    def grown(self, end: int) -> None:
        """A write ended at `end` past the old length: inside the durable length's last
        allocated block, the new size goes to the journal at once (ext4's delayed allocation
        updates i_disksize for an already mapped block), before the data is written."""
        size = min(end, block_end(self.dlen))
        if size > self.dlen and size not in self.sizes and len(self.sizes) < _MAX_SIZES:
            self.sizes.append(size)

    def truncated(self, old: int, size: int) -> None:
        """An ftruncate from `old` to `size` bytes: the new size goes to the journal at once,
        before any data written since the sync (xfs: ``truncate(B, 1500); overwrite B at 825;
        fdatasync(A)`` may keep B as its durable first 1500 bytes)."""
        if size < old:
            self.low = size if self.low is None else min(self.low, size)
        if size != self.dlen and size not in self.sizes and len(self.sizes) < _MAX_SIZES:
            self.sizes.append(size)
        self.trunc = (size, size > old, len(self.sizes))

    def dirty(self) -> bool:
        return not (self.clean == self.dlen == len(self.data))

    def save_durable(self) -> None:
        """Called before the first change below dlen: keep the durable bytes."""
        if self.dsaved is None:
            self.dsaved = self.overlay(bytes(self.data[: self.dlen]))

    def durable(self) -> bytes:
        if self.dsaved is not None:
            return self.dsaved
        return self.overlay(bytes(self.data[: self.dlen]))

    def overlay(self, content: bytes) -> bytes:
        """Apply patches (what the disk really has in ranges a failed fsync dropped)."""
        if not self.patches:
            return content
        buf = bytearray(content)
        for start, disk in self.patches:
            if start < len(buf):
                end = min(len(buf), start + len(disk))
                buf[start:end] = disk[: end - start]
        return bytes(buf)

    def cut_patches(self, start: int, end: int) -> None:
        """Rewriting or truncating [start, end) makes that range ordinary dirty data again."""
        kept: list[tuple[int, bytes]] = []
        for pstart, disk in self.patches:
            pend = pstart + len(disk)
            if pend <= start or pstart >= end:
                kept.append((pstart, disk))
                continue
            if pstart < start:
                kept.append((pstart, disk[: start - pstart]))
            if pend > end:
                kept.append((end, disk[end - pstart :]))
        self.patches = kept



class InodeView:
    """A read-only view of one SimDisk inode (``SimDisk.inode``, ``SimDisk.inode_at``).

    Live, like ``types.MappingProxyType``: it shows the inode as it is when read, and has no way
    to change it. Views of the same inode compare equal.

    * ``size_bytes``: visible length; ``read(start, stop)``: visible bytes (a copy of that range
      only, so reading a growing file's new tail costs only the tail).
    * ``durable_size_bytes`` and ``durable()``: what survives power loss if nothing unsynced
      does.
    * ``durable_is_prefix``: the durable contents are ``read(0, durable_size_bytes)`` (false
      after a truncate or overwrite below the durable length since the last sync, or when a
      range a failed fsync dropped lies below it).
    * ``dropped_ranges``: ``(start, end)`` ranges a failed fsync marked clean without writing
      (``FsyncFailure.LINUX``); every crash image reads the disk's old bytes there.
    * ``dirty``: something visible is not durable.
    """

    __slots__ = ("_node",)
    _node: Inode

    def __init__(self, node: Inode) -> None:
        object.__setattr__(self, "_node", node)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("InodeView is read-only")

    @property
    def ino(self) -> int:
        return self._node.ino

    @property
    def size_bytes(self) -> int:
        return len(self._node.data)

    @property
    def durable_size_bytes(self) -> int:
        return self._node.dlen

    @property
    def dirty(self) -> bool:
        return self._node.dirty()

    @property
    def durable_is_prefix(self) -> bool:
        node = self._node
        return node.dsaved is None and all(start >= node.dlen for start, _ in node.patches)

    @property
    def dropped_ranges(self) -> tuple[tuple[int, int], ...]:
        return tuple((start, start + len(disk)) for start, disk in self._node.patches)

    def read(self, start: int = 0, stop: int | None = None) -> bytes:
        """Visible bytes ``[start:stop]`` (slice semantics)."""
        return bytes(self._node.data[start:stop])

    def durable(self) -> bytes:
        return self._node.durable()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InodeView):
            return NotImplemented
        return self._node is other._node

    def __hash__(self) -> int:
        return hash(id(self._node))

    def __repr__(self) -> str:
        node = self._node
        return (
            f"InodeView(ino={node.ino}, size_bytes={len(node.data)}, "
            f"durable_size_bytes={node.dlen}, dirty={node.dirty()})"
        )


def file_choice_problem(
    inode: Inode, fc: FileChoice, sector: int, model: str = ""
) -> str | None:
    """What is wrong with `fc` as an image of `inode` under `model` (its value), or None."""
    committed = inode.committed.get(model)
    if committed is not None:
        return _committed_problem(inode, fc, committed)
    n = len(inode.data)
    dlen, clean = inode.dlen, inode.clean
    kind, length = fc.kind, fc.length_bytes
    if kind is ImageKind.DURABLE:
        return None if length == dlen else f"length_bytes: durable length is {dlen}"
    if kind is ImageKind.SIZE_BEFORE_DATA:
        if length not in inode.sizes:
            known = ", ".join(map(str, inode.sizes)) or "none"
            return f"length_bytes: a size committed before its data must be one of: {known}"
        return None
    if kind is ImageKind.IN_PLACE:
        if clean >= dlen or inode.low is None:
            return "kind: 'in-place' needs a truncate below the durable length"
        return None if length == dlen else f"length_bytes: durable length is {dlen}"
    if kind is ImageKind.VISIBLE:
        return "kind: 'visible' is only the process model's image"
    base = prefix_base(inode)
    if not base <= length <= n:
        return f"length_bytes: must be in {base}..{n}, got {length}"
    if kind is ImageKind.PREFIX:
        return None
    if clean != dlen:
        return (
            f"kind: {kind.value!r} is not modelled after a truncate or overwrite below "
            "the durable length"
        )
    if length == dlen:
        return f"kind: {kind.value!r} needs length_bytes > the durable length {dlen}"
    last = (length - 1) // sector
    if kind in (ImageKind.TORN_ZERO, ImageKind.TORN_GARBAGE):
        if fc.sector_index != last:
            return f"sector_index: the torn sector of a {length}-byte image is {last}"
        return None
    s = fc.sector_index
    if s is None or not (s < last and (s + 1) * sector > dlen):
        return f"sector_index: must be an unsynced sector before sector {last}, got {s}"
    return None


def _committed_problem(inode: Inode, fc: FileChoice, committed: Committed) -> str | None:
    kind, length, size = fc.kind, fc.length_bytes, committed.size
    if kind is ImageKind.DURABLE:
        return None if length == size else f"length_bytes: durable length is {size}"
    if kind is ImageKind.SIZE_BEFORE_DATA:
        later = inode.sizes[committed.sizes_from :]
        if length not in later:
            known = ", ".join(map(str, later)) or "none"
            return f"length_bytes: a size committed before its data must be one of: {known}"
        return None
    if kind is ImageKind.PREFIX:
        n = len(inode.data)
        if not size <= length <= n:
            return f"length_bytes: must be in {size}..{n}, got {length}"
        return None
    return f"kind: {kind.value!r} is not modelled after a committed truncate"


def durable_image(inode: Inode, model: str = "") -> bytes:
    """What survives of `inode` under `model` (its value) if nothing unsynced reaches the disk."""
    committed = inode.committed.get(model)
    return inode.durable() if committed is None else committed.image


def materialise(inode: Inode, fc: FileChoice, sector: int, model: str = "") -> bytes:
    """The bytes of `inode` in an image where its data is `fc` (already validated)."""
    kind, length = fc.kind, fc.length_bytes
    if kind is ImageKind.DURABLE:
        return durable_image(inode, model)
    if kind is ImageKind.SIZE_BEFORE_DATA:
        durable = inode.durable()[:length]
        return durable + bytes(length - len(durable))
    if kind is ImageKind.IN_PLACE:
        return in_place(inode)
    if kind is ImageKind.PREFIX:
        return inode.overlay(bytes(inode.data[:length]))
    if kind is ImageKind.REORDERED:
        assert fc.sector_index is not None
        buf = bytearray(inode.overlay(bytes(inode.data[:length])))
        start = max(fc.sector_index * sector, inode.dlen)
        end = min((fc.sector_index + 1) * sector, length)
        buf[start:end] = bytes(end - start)
        return bytes(buf)
    start = max(inode.dlen, ((length - 1) // sector) * sector)
    head = inode.overlay(bytes(inode.data[:start]))
    if kind is ImageKind.TORN_ZERO:
        return head + bytes(length - start)
    # Garbage derived from (inode, sector) so the same choice gives the same bytes.
    return head + garbage_sector(inode.ino, (length - 1) // sector, length - start)


def prefix_base(inode: Inode) -> int:
    """The shortest ``PREFIX`` image: the durable length, or after a truncate below it since
    the sync, the lowest length a truncate left (an overwrite never shortens the file)."""
    if inode.clean == inode.dlen or inode.low is None:
        return inode.dlen
    return min(inode.low, inode.dlen)


def in_place(inode: Inode) -> bytes:
    """The ``IN_PLACE`` image: the durable size over the file's blocks as writeback leaves them
    before the journal commit. Bytes in blocks the file had at its last sync read as visible
    (an overwrite is written in place); past the visible length, up to the end of the block a
    truncate left, as zeros (the truncate zeroed that block's tail); beyond that block, as
    durable (the freed blocks still hold the old data the committed size maps)."""
    dlen = inode.dlen
    cut = dlen if inode.low is None else min(dlen, block_end(inode.low))
    head = bytes(inode.data[:cut])
    head += bytes(cut - len(head))
    return inode.overlay(head + inode.durable()[cut:dlen])


def file_options(
    inode: Inode, limits: ImageLimits, sector: int, model: str = ""
) -> tuple[FileChoice, ...]:
    """Every legal image of one dirty inode under `model` (its value), DURABLE first (see the
    module docstring)."""
    committed = inode.committed.get(model)
    if committed is not None:
        return _committed_options(inode, limits, sector, committed)
    ino, n, dlen, clean = inode.ino, len(inode.data), inode.dlen, inode.clean
    out = [FileChoice(ino, ImageKind.DURABLE, dlen)]
    if limits.in_place and clean < dlen and inode.low is not None:
        out.append(FileChoice(ino, ImageKind.IN_PLACE, dlen))
    if limits.size_before_data:
        out.extend(FileChoice(ino, ImageKind.SIZE_BEFORE_DATA, size) for size in inode.sizes)
    base = prefix_base(inode)
    if limits.byte_granularity:
        lengths: Iterable[int] = range(base if clean != dlen else base + 1, n + 1)
    else:
        first = (base // sector + 1) * sector
        ends = list(range(first, n, sector))
        if clean != dlen:
            ends.insert(0, base)
        if n > base:
            ends.append(n)
        lengths = ends
    # A range a failed fsync dropped never reaches the disk: no torn/reordered variants.
    append_only = clean == dlen and not inode.patches
    window = limits.reorder_window_sectors
    for length in lengths:
        out.append(FileChoice(ino, ImageKind.PREFIX, length))
        if not append_only or length <= dlen:
            continue
        last = (length - 1) // sector
        if limits.torn:
            out.append(FileChoice(ino, ImageKind.TORN_ZERO, length, last))
            out.append(FileChoice(ino, ImageKind.TORN_GARBAGE, length, last))
        if limits.reorder and window:
            lo = max(dlen // sector, last - window)
            for s in range(lo, last):
                out.append(FileChoice(ino, ImageKind.REORDERED, length, s))
    return tuple(out)


def _committed_options(
    inode: Inode, limits: ImageLimits, sector: int, committed: Committed
) -> tuple[FileChoice, ...]:
    """After a committed truncate: that image, later committed sizes, prefixes from its size."""
    ino, n, size = inode.ino, len(inode.data), committed.size
    out = [FileChoice(ino, ImageKind.DURABLE, size)]
    if limits.size_before_data:
        out.extend(FileChoice(ino, ImageKind.SIZE_BEFORE_DATA, s)
                   for s in inode.sizes[committed.sizes_from :])
    if limits.byte_granularity:
        lengths: Iterable[int] = range(size, n + 1)
    else:
        lengths = [size, *range((size // sector + 1) * sector, n, sector)]
        if n > size:
            lengths.append(n)
    out.extend(FileChoice(ino, ImageKind.PREFIX, length) for length in lengths)
    return tuple(out)
