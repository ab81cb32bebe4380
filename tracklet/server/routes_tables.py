"""Read API for a run's tables (``tracklet.Table``, docs/tables.md): the keys, and a page of a
table version filtered and sorted by DuckDB over its Parquet fragments (``RecordedRun.table``).

The filter is the table filter language (``tracklet/media/query_filter.py``): parsed against the
table's columns and compiled with bound parameters, bounded in size; a bad one is 400 naming the
problem. Tables are read from the server's data root: its record log copies and, for fragments,
its artifacts' blob store (``media_blobs.py``: on a tracking server only fragments the run's project
holds, which ``tracklet sync`` and online mode send; ``tracklet ui`` serves the local data root,
where both are). A run's
table records are folded out of its logs (a shared run's every writer's), and a log that grew is
read on from where the last request stopped (``log_fold.LogFolds``), so a live run's table panel
polls cheaply. What is kept of each record is an index entry (its key, step, time, mode, table id,
increment, version number, rows and where its frame is in its writer's log), not the record: a
shared run may have thousands of writers' logs. A writer's entries are packed in columns
(``_Tables``: ~77 bytes an entry, each key and table id kept once), and a request makes a
``TableRef`` only of those it needs (``_Index``: a key's, a version's), found by bisection where
the writers' entries allow it (``_KeyFacts``: a version by step or number costs
O(writers x log(versions))), or else in views of a key's entries made once per index (by step:
``_StepView``; by number: ``_numbers_of``), and ``table-versions`` lists a page at a time (``versions_page``:
its cost is its entries). The index is bounded
(``INDEX_RUN_BYTES`` per run, ``INDEX_BYTES`` for every run kept: past the first a run is answered
and not kept, past the second the runs asked for least recently are dropped; either is read again
on its next request). The records a request needs (a version's, whole) are read back from their
logs by offset (``load``) and the last ones read are kept up to ``RECORDS_KEPT_BYTES`` (their
serialized size); a record that is no longer what its entry says (a log replaced meanwhile) is
never used: the run is indexed again and the request answered from that (503 if it happens twice:
``ASK_AGAIN``, declared on every route that reads records back). A route that searches several
versions' records (``table-blobs``) reads them a batch at a time (``scan``).
"""

from __future__ import annotations

import bisect
import sys
import threading
import weakref
import zlib
from array import array
from collections import OrderedDict
from typing import Any, Callable, Iterator

from fastapi import HTTPException, Query, Request

from tracklet.core.jsonsafe import json_safe
from tracklet.core.run_tables import WRITER_NUMBERS
from tracklet.errors import TableError, TableNotFound
from tracklet.server.log_fold import LogFolds, run_fold
from tracklet.server.media_blobs import media_blobs
from tracklet.server.models import (ErrorResponse, TableChart, TableColumn, TableKeysResponse, TableRowsResponse,
                                   errors)
from tracklet.server.body import bounded_router

router = bounded_router(prefix="/api/v1/runs", tags=["read"])

_ERRORS = errors(400, 404)
MAX_PAGE = 1000


INDEX_RUN_BYTES = 16 << 20  # a run's table index kept, every writer's log together
INDEX_BYTES = 64 << 20  # the table indexes of every run kept (at most 64 runs)
RECORDS_KEPT_BYTES = 16 << 20  # whole table records read back and kept (their serialized size)


class TableRef:
    """What the routes need of a ``TableLogged`` record to choose a version (the fields they
    read, ``fragment_rows`` the sum of its fragments' rows) and where it is: its writer's fold
    (``tables``, whose ``copy`` names the log) and its frame's offset and length there. Made for a
    request out of the writer's packed index (``_Tables.ref``) and dropped with it: the index
    keeps columns of numbers, not these."""

    __slots__ = ("key", "step", "time", "log_mode", "table_id", "increment", "version_plus_one",
                 "fragment_rows", "tables", "place", "offset", "length", "crc")

    def __init__(self, tables: "_Tables", place: int) -> None:
        strings = tables.strings
        self.key = strings[tables.keys[place]]
        self.step = tables.steps[place]
        self.time = tables.times[place]
        self.log_mode = tables.modes[place]
        self.table_id = strings[tables.table_ids[place]]
        self.increment = tables.increments[place]
        self.version_plus_one = tables.versions[place]
        self.fragment_rows = tables.rows[place]
        self.tables = tables
        self.place = place
        self.offset = tables.offsets[place]
        self.length = tables.lengths[place]
        self.crc = tables.crcs[place]

    def matches(self, record: Any) -> bool:
        """Whether ``record`` is the one this entry was made of (read back by offset)."""
        return (record.key == self.key and int(record.step) == self.step and int(record.log_mode) == self.log_mode
                and record.table_id == self.table_id and int(record.increment) == self.increment
                and int(record.version_plus_one) == self.version_plus_one
                and _fragment_rows(record) == self.fragment_rows)


def _fragment_rows(record: Any) -> int:
    """The rows of a record's fragments, as its entry keeps them (at most 2**64 - 1)."""
    return min(sum(int(fragment.rows) for fragment in record.fragments), (1 << 64) - 1)


# A writer's index is columns, one item per entry (``array``: a fixed size each, no object per
# entry), its keys and table ids interned once: step, time, log mode, key, table id, increment,
# version, rows, offset, length, crc32 (68 bytes), and the entry's place under its key (4).
_CODES = {"steps": "q", "times": "d", "modes": "i", "keys": "I", "table_ids": "I", "increments": "Q",
          "versions": "Q", "rows": "Q", "offsets": "Q", "lengths": "I", "crcs": "I"}
_REF_BYTES = (sum(array(code).itemsize for code in _CODES.values()) + 4) * 17 // 16  # (arrays grow ~1/16 ahead)
_NAME_BYTES = 2 * 8 + 50 + sys.getsizeof(array("I"))  # a string's place in ``strings`` and ``ids``, its key's list
_INCREMENT_BYTES = (4 + 8) * 17 // 16  # an INCREMENTAL entry's place under its table and its rows so far
_MOST = (1 << 64) - 1


class _KeyFacts:
    """What a writer's entries of one key are, kept as they are folded so a request chooses a
    version by bisecting (``_Index``) instead of passing over every entry: whether the steps never
    go down, how many entries carry a writer's number (``version_plus_one``) and how many don't,
    and whether the numbers rise strictly. Facts about every entry folded: a request's snapshot
    holds a prefix of them, of which they hold too (a fact false of the whole may be true of the
    prefix: the request then takes the general way, which is right for any entries)."""

    __slots__ = ("steps_sorted", "numbered", "unnumbered", "rising", "last_step", "last_number")

    def __init__(self) -> None:
        self.steps_sorted = True
        self.numbered = 0
        self.unnumbered = 0
        self.rising = True
        self.last_step = -(1 << 63)
        self.last_number = -1

    def add(self, step: int, version_plus_one: int) -> None:
        if step < self.last_step:
            self.steps_sorted = False
        self.last_step = step
        number = version_plus_one - 1
        if 0 <= number < WRITER_NUMBERS:
            self.numbered += 1
            if number <= self.last_number:
                self.rising = False
            self.last_number = number
        else:
            self.unnumbered += 1


class _Increments:
    """A writer's INCREMENTAL entries of one table under one key: their places, the rows of its
    increments so far at each (saturating at 2**64 - 1), and whether their steps and increment
    numbers never go down (so a request bisects them)."""

    __slots__ = ("places", "rows", "steps_sorted", "increments_sorted", "last_step", "last_increment")

    def __init__(self) -> None:
        self.places = array("I")
        self.rows = array("Q")
        self.steps_sorted = self.increments_sorted = True
        self.last_step = -(1 << 63)
        self.last_increment = 0

    def add(self, place: int, step: int, increment: int, rows: int) -> None:
        if step < self.last_step:
            self.steps_sorted = False
        if increment < self.last_increment:
            self.increments_sorted = False
        self.last_step, self.last_increment = step, increment
        self.rows.append(min(_MOST, (self.rows[-1] if self.rows else 0) + rows))
        self.places.append(place)

    def upto(self, count: int) -> int:
        """How many of them a snapshot of ``count`` entries of the writer holds."""
        places = self.places
        size = len(places)
        return size if not size or places[size - 1] < count else bisect.bisect_left(places, count)


_FACTS_BYTES = 200  # a key's _KeyFacts; an INCREMENTAL table's _Increments (its arrays' headers, its dict slot)


class _Tables:
    """One writer's log's table index, packed: a column (``array``) per field in log order, keys
    and table ids as numbers into ``strings`` (each distinct one kept once), ``by_key`` each key's
    entries' places, ``facts`` what they are (``_KeyFacts``), ``increments`` each (key, table id)'s
    INCREMENTAL entries (``_Increments``); ``bytes`` what they keep. ``ref(place)`` is an entry as
    a ``TableRef``."""

    def __init__(self) -> None:
        for name, code in _CODES.items():
            setattr(self, name, array(code))
        self.strings: list[str] = []
        self.ids: dict[str, int] = {}
        self.by_key: dict[int, array] = {}
        self.facts: dict[int, _KeyFacts] = {}
        self.increments_of: dict[tuple[int, int], _Increments] = {}
        self.bytes = 0
        self.copy: Any = None  # the log's RunPaths, set by the view (a fold doesn't know its label)

    steps: array
    times: array
    modes: array
    keys: array
    table_ids: array
    increments: array
    versions: array
    rows: array
    offsets: array
    lengths: array
    crcs: array

    def __len__(self) -> int:
        return len(self.offsets)

    def name(self, text: str) -> int:
        kept = self.ids.get(text)
        if kept is None:
            kept = self.ids[text] = len(self.strings)
            self.strings.append(text)
            self.bytes += sys.getsizeof(text) + _NAME_BYTES
        return kept

    def ref(self, place: int) -> TableRef:
        return TableRef(self, place)

    def of_key(self, key: str) -> list[TableRef]:
        """The entries of ``key``, in log order."""
        number = self.ids.get(key)
        places = self.by_key.get(number) if number is not None else None
        return [TableRef(self, place) for place in places] if places else []

    def firsts(self) -> list[TableRef]:
        """Each key's first entry, in the order of the keys' first entries."""
        return [TableRef(self, places[0]) for places in self.by_key.values()]

    def apply(self, record: Any, where: tuple[int, bytes]) -> None:
        if record.WhichOneof("kind") != "table_logged":
            return
        from tracklet.core.recordlog import FRAME_HEADER

        table = record.table_logged
        offset, payload = where
        fields = (int(table.step), float(table.time), int(table.log_mode), self.name(table.key),
                  self.name(table.table_id), int(table.increment), int(table.version_plus_one),
                  _fragment_rows(table), offset, FRAME_HEADER.size + len(payload), zlib.crc32(payload))
        columns = (self.steps, self.times, self.modes, self.keys, self.table_ids, self.increments, self.versions,
                   self.rows, self.offsets, self.lengths, self.crcs)
        for place, (column, value) in enumerate(zip(columns, fields)):
            try:
                column.append(value)
            except OverflowError:  # a number no column holds (a damaged log): the record is skipped alone
                for added in columns[:place]:
                    added.pop()
                raise
        key = fields[3]
        at = len(self.offsets) - 1
        facts = self.facts.get(key)
        if facts is None:
            facts = self.facts[key] = _KeyFacts()
            self.bytes += _FACTS_BYTES
        facts.add(fields[0], fields[6])
        if fields[2] == 3:  # LOG_MODE_INCREMENTAL
            group = self.increments_of.get((key, fields[4]))
            if group is None:
                group = self.increments_of[key, fields[4]] = _Increments()
                self.bytes += _FACTS_BYTES
            group.add(at, fields[0], fields[5], fields[7])
            self.bytes += _INCREMENT_BYTES
        places = self.by_key.get(key)
        if places is None:
            places = self.by_key[key] = array("I")
        places.append(at)  # (last: a snapshot's by_key holds only keys whose facts are made)
        self.bytes += _REF_BYTES


class _Held:
    """A writer's entries of one key in a request's snapshot: the first ``count`` of ``places``."""

    __slots__ = ("tables", "places", "count", "label", "facts", "key", "snapshot")

    def __init__(self, tables: _Tables, places: array, count: int, label: str, key: int, snapshot: int) -> None:
        self.tables, self.places, self.count, self.label, self.key = tables, places, count, label, key
        self.facts = tables.facts[key]
        self.snapshot = snapshot  # the writer's entries in the request's snapshot

    def ref(self, at: int) -> TableRef:
        return TableRef(self.tables, self.places[at])

    def last_at_or_before(self, step: int) -> int:
        """The index (into ``places``) of the last entry at or before ``step``; -1 for none:
        a bisection where the steps never go down, else a pass from the end."""
        steps, places = self.tables.steps, self.places
        if self.facts.steps_sorted:
            return bisect.bisect_right(places, step, 0, self.count, key=steps.__getitem__) - 1
        for at in range(self.count - 1, -1, -1):
            if steps[places[at]] <= step:
                return at
        return -1

    def increments(self, table_id: str) -> tuple[_Increments, int] | None:
        """This writer's INCREMENTAL entries of ``table_id`` under the key and how many of them
        the request's snapshot holds; None for none."""
        number = self.tables.ids.get(table_id)
        group = self.tables.increments_of.get((self.key, number)) if number is not None else None
        if group is None:
            return None
        held = group.upto(self.snapshot)
        return (group, held) if held else None


class _StepView:
    """A key's entries in a request's snapshot sorted by step, so the entry at a step is a
    bisection however the steps were logged (going down in a log, writers interleaved):
    ``steps`` every entry's step, ascending, and ``last[i]`` the greatest place in the readers'
    order (the writers' entries one after another: ``writers`` their places in the index,
    ``starts`` where each one's entries start) of the entries ``steps[:i + 1]`` are of. The entry
    at step ``s`` by the readers' rule (``version_records``: of the entries at or before ``s``,
    the last in the readers' order, whichever its step) is ``last[i]`` for ``i`` the last place
    in ``steps`` at or before ``s``: equal steps included, so the same entry wins. 16 bytes an
    entry and 12 a writer holding the key."""

    __slots__ = ("writers", "starts", "steps", "last", "bytes")

    def __init__(self, helds: list[_Held], writers: list[int]) -> None:
        from itertools import accumulate

        self.writers = array("I", writers)
        self.starts = array("q", [0])
        every: list[int] = []
        for held in helds:
            every += map(held.tables.steps.__getitem__, held.places[:held.count])
            self.starts.append(len(every))
        order = sorted(range(len(every)), key=every.__getitem__)
        self.steps = array("q", map(every.__getitem__, order))
        self.last = array("q", accumulate(order, max))
        self.bytes = sum(sys.getsizeof(column) for column in (self.writers, self.starts, self.steps, self.last))

    def last_at_or_before(self, step: int) -> tuple[int, int] | None:
        """(the writer's place in the index, the entry's among the writer's entries of the key)
        of the entry at ``step``; None for none."""
        found = bisect.bisect_right(self.steps, step)
        if not found:
            return None
        place = self.last[found - 1]
        writer = bisect.bisect_right(self.starts, place) - 1
        return self.writers[writer], place - self.starts[writer]


# A key's step view is made once the index's lookups of it by step read this many times its entries
# (a bisection reads log2 of a writer's; a pass, those from its last back to the one chosen), each
# writer held counting as _WRITER_COST entries more: sorting the key costs ~10-30 passes over it.
_VIEW_AFTER = 2
_WRITER_COST = 16
_VIEW_BYTES = 100  # a view's (step view's, numbering's) object and its slot in the index's dict (its key shared with the folds)
_INDEX_BYTES = 400  # an index's object and its dicts of views while empty
_PASSED_BYTES = 100  # a key's count in ``_Index._passed`` (its slot and int)


MAX_VERSIONS = 10_000  # table-versions without a limit lists the key's last this many (as it always did)
PAGE_VERSIONS = 1000  # table-versions' page with a cursor and no limit


class _Index:
    """A run's table index for one request: its writers' ``_Tables`` in the readers' order (its
    own log's, then each part's by label: ``labels``); entries made as asked for. Made under the
    run's lock (the view) and read after it, while another request's fold may append to the same
    columns and add keys: it holds each writer's entry count and keys then (``by_key`` copied:
    O(keys), not entries) and answers only those, never a key or entry folded since (nor a dict
    changing size as it is iterated).

    A version is chosen by bisection where the writers' entries allow it (``_KeyFacts``): the
    entry at a step by the writer's steps, never going down in a log; a run-table version by the
    writers' numbers, rising in each log and in ranges apart between logs (one machine's counter),
    or by its place where no entry has a number (logs before session 32). O(writers x log(entries))
    a request, however many versions the key has. Where the steps go down in a log or several
    writers hold the key, the entry at a step is bisected out of the key's step-sorted view
    (``_StepView``, made once for the index when the key's lookups by step have read twice its
    entries: O(entries x log) then, O(log(entries)) each lookup after; before, a pass each). A
    version by number where no bisection holds (numbers of two machines' counters, logs with and
    without numbers) is found in the key's numbering (``_numbers_of``, likewise made once). The views are charged to the run's budget with the key
    maps the index copies (``bytes``)."""

    def __init__(self, writers: list[_Tables], labels: list[str] | None = None) -> None:
        self.writers = writers
        self.labels = labels if labels is not None else ["", *(f"{n:012d}" for n in range(1, len(writers)))]
        self._counts = [len(tables) for tables in writers]
        self._keys = [dict(tables.by_key) for tables in writers]
        self._numbers: dict[str, array] = {}  # ``_numbers_of``: kept for every request and page
        self._steps: dict[str, _StepView] = {}  # ``_step_view``: likewise
        self._passed: dict[str, int] = {}  # entries (and writers) the lookups of a key by step read so far
        # What the index keeps beyond its writers' folds (each writer's key map copied, the views
        # made since), charged to the run's budget with them (``log_fold.LogFolds``' ``memo_measure``);
        # ``grown()`` (set by the view that keeps the index) charges a view as it is made.
        self.bytes = (sum(sys.getsizeof(keys) for keys in self._keys) + sys.getsizeof(self._keys)
                      + sys.getsizeof(self._counts) + sys.getsizeof(self.labels) + _INDEX_BYTES)
        self.grown: Callable[[], None] | None = None
        self._grow_lock = threading.Lock()

    def of_key(self, key: str) -> list[TableRef]:
        """``key``'s entries in the readers' order."""
        return [held.ref(at) for held in self._held(key) for at in range(held.count)]

    def firsts(self) -> list[TableRef]:
        """Each writer's first entry of each key (what names the keys in the order first logged)."""
        return [TableRef(tables, places[0]) for tables, keys in zip(self.writers, self._keys)
                for places in keys.values()]

    def _held(self, key: str) -> list[_Held]:
        """The writers holding ``key`` in the snapshot, in the readers' order (no entry copied)."""
        found = []
        for tables, count, keys, label in zip(self.writers, self._counts, self._keys, self.labels):
            number = tables.ids.get(key)
            places = keys.get(number) if number is not None else None
            if not places:
                continue
            size = len(places)
            if places[size - 1] >= count:  # (entries folded since: in order, so the last ones)
                size = bisect.bisect_left(places, count)
            if size:
                found.append(_Held(tables, places, size, label, number, count))  # type: ignore[arg-type]
        return found

    def last_of_key(self, key: str, count: int) -> list[TableRef]:
        """``key``'s last ``count`` entries, newest first (only those made)."""
        refs: list[TableRef] = []
        for held in reversed(self._held(key)):
            for at in range(held.count - 1, -1, -1):
                if len(refs) >= count:
                    return refs
                refs.append(held.ref(at))
        return refs

    def at_step(self, key: str, step: int | None) -> list[TableRef]:
        """``version_records`` of ``key``'s entries (the version at ``step``, default the latest),
        made only for the entries it chooses: empty for none. The last entry at or before
        ``step`` is bisected out of each writer holding the key, from the last, where its steps
        never go down, else passed over from its last entry back; once those lookups of the key in
        the index read ``_VIEW_AFTER`` times its entries (a writer passed by counting as
        ``_WRITER_COST`` entries), out of the key's step-sorted view (``_step_view``). Not at once:
        a live run's index (made again each time its logs grew) often answers one lookup, where
        sorting the key costs ~10-30 passes over it."""
        chosen: TableRef | None = None
        view = self._steps.get(key) if step is not None else None
        if view is None:
            helds = self._held(key)
            cost = self._passed.get(key, 0) if step is not None else -1
            if cost >= _VIEW_AFTER * sum(held.count for held in helds) and (
                    len(helds) > 1 or (helds and not helds[0].facts.steps_sorted)):
                view = self._step_view(key, helds)
            else:  # the latest, or the writers' entries bisected or passed over from the last one back
                cost += _WRITER_COST * len(helds)
                for held in reversed(helds):
                    at = held.count - 1 if step is None else held.last_at_or_before(step)
                    if step is not None:
                        cost += held.count.bit_length() if held.facts.steps_sorted else held.count - at
                    if at >= 0:
                        chosen = held.ref(at)
                        break
                if step is not None and helds:  # (a key none holds: nothing to view, nothing kept of it)
                    with self._grow_lock:  # (charged once however many requests add it at once)
                        self.bytes += 0 if key in self._passed else _PASSED_BYTES
                        self._passed[key] = cost
        if view is not None:
            assert step is not None
            place = view.last_at_or_before(step)
            if place is not None:
                tables = self.writers[place[0]]
                chosen = TableRef(tables, self._keys[place[0]][tables.ids[key]][place[1]])
        if chosen is None:
            return []
        if chosen.log_mode != 3:  # LOG_MODE_INCREMENTAL
            return [chosen]
        if view is not None:
            helds = self._held(key)
        refs: list[TableRef] = []
        for held in helds:
            found = held.increments(chosen.table_id)
            if found is None:
                continue
            group, size = found
            if step is not None:
                steps = held.tables.steps
                if group.steps_sorted:
                    size = bisect.bisect_right(group.places, step, 0, size, key=steps.__getitem__)
                else:
                    refs += [TableRef(held.tables, place) for place in group.places[:size] if steps[place] <= step]
                    continue
            refs += [TableRef(held.tables, group.places[at]) for at in range(size)]
        return sorted(refs, key=lambda ref: ref.increment)  # in the order added, however written

    def _numbering(self, helds: list[_Held]) -> str:
        """How ``key``'s entries are numbered (``version_numbers``) without numbering each:
        ``"writers"`` (every entry has its writer's number, rising in each log, the logs' ranges
        apart: each keeps its own), ``"places"`` (none has one: the n-th entry is v<n>), else
        ``"every"`` (number them all)."""
        if all(held.facts.unnumbered == 0 and held.facts.rising for held in helds):
            spans = sorted((held.tables.versions[held.places[0]], held.tables.versions[held.places[held.count - 1]])
                           for held in helds)
            if all(spans[n][0] > spans[n - 1][1] for n in range(1, len(spans))):
                return "writers"
        if all(held.facts.numbered == 0 for held in helds):
            return "places"
        return "every"

    def version(self, key: str, number: int) -> list[TableRef] | None:
        """``records_of_version(entries, key, number)`` (``core/run_tables``), made only for the
        entries it chooses: by bisection of the writers' numbers, or by place (``_numbering``);
        else by its place in the key's numbering (``_numbers_of``, made once for the index)."""
        helds = self._held(key)
        found: TableRef | None = None
        numbering = self._numbering(helds)
        if numbering == "writers":
            for held in helds:
                versions = held.tables.versions
                if versions[held.places[0]] <= number + 1 <= versions[held.places[held.count - 1]]:
                    at = bisect.bisect_left(held.places, number + 1, 0, held.count, key=versions.__getitem__)
                    if versions[held.places[at]] == number + 1:
                        found = held.ref(at)
                    break
            if found is None:
                return None
        else:  # the entry at its place: the n-th ("places"), or where the key's numbering has it
            try:
                rest = number if numbering == "places" else self._numbers_of(key).index(number)
            except (ValueError, OverflowError):  # a number none has
                return None
            for held in helds if rest >= 0 else ():
                if rest < held.count:
                    found = held.ref(rest)
                    break
                rest -= held.count
            if found is None:
                return None
        if found.log_mode != 3:
            return [found]
        earlier: list[TableRef] = []
        for held in helds:
            group_held = held.increments(found.table_id)
            if group_held is None:
                continue
            group, size = group_held
            increments = held.tables.increments
            if group.increments_sorted:
                size = bisect.bisect_left(group.places, found.increment, 0, size, key=increments.__getitem__)
                earlier += [TableRef(held.tables, group.places[at]) for at in range(size)]
            else:
                earlier += [TableRef(held.tables, place) for place in group.places[:size]
                            if increments[place] < found.increment]
        return [*earlier, found]

    def versions_page(self, key: str, cursor: tuple[str, int] | None, limit: int | None
                      ) -> tuple[list[tuple[_Tables, int, int, int]], int, tuple[str, int]] | None:
        """A page of ``key``'s versions in the readers' order: (writer, the entry's place there, its
        run-table number, the rows its version has: an INCREMENTAL one's every increment up to it;
        no ``TableRef`` made: a page of 10,000 is that many tuples), the key's entries in
        all, and the cursor of the next page (past the last entry: where entries logged later will
        be); None when the key has none.
        ``cursor`` (label, n): from the n-th entry of the writer ``label`` (entries of writers
        before it are left out: a writer that came between pages is not listed, one listed is
        never listed again); ``limit`` None: the last ``MAX_VERSIONS``, as the route always
        answered. Numbers, and an INCREMENTAL entry's rows so far, come from the writers' facts
        (``_numbering``, ``_Increments.rows``): O(writers x log(entries) + the page), not
        O(entries), unless every entry must be numbered."""
        helds = self._held(key)
        if not helds:
            return None
        total = sum(held.count for held in helds)
        position = 0  # the page's first entry's place among the key's entries
        start = 0  # and the first writer's index (into helds) and entry there
        first_at = 0
        if cursor is not None:
            label, at = cursor
            start = len(helds)
            for place, held in enumerate(helds):
                if held.label > label or (held.label == label and at < held.count):
                    start, first_at = place, (at if held.label == label else 0)
                    break
                position += held.count
            position += first_at
        elif limit is None:
            rest = max(0, total - MAX_VERSIONS)
            position = rest
            while start < len(helds) and rest >= helds[start].count:
                rest -= helds[start].count
                start += 1
            first_at = rest
        wanted = MAX_VERSIONS if limit is None else limit
        numbering = self._numbering(helds)
        every = self._numbers_of(key) if numbering == "every" else None
        page: list[tuple[_Tables, int, int, int]] = []
        so_far: dict[str, tuple[int, int]] = {}  # INCREMENTAL table id -> (writer, its rows before it)
        place, at = start, first_at
        while place < len(helds) and len(page) < wanted:
            held = helds[place]
            versions, modes, fragment_rows = held.tables.versions, held.tables.modes, held.tables.rows
            while at < held.count and len(page) < wanted:
                entry = held.places[at]
                rows = fragment_rows[entry]
                if modes[entry] == 3:
                    rows = self._rows_so_far(helds, place, entry, so_far)
                number = (versions[entry] - 1 if numbering == "writers"
                          else position if every is None else every[position])
                page.append((held.tables, entry, number, rows))
                at += 1
                position += 1
            if at >= held.count:
                place, at = place + 1, 0
        following = (helds[place].label, at) if place < len(helds) else (helds[-1].label, helds[-1].count)
        return page, total, following

    def _numbers_of(self, key: str) -> array:
        """``version_numbers`` of ``key``'s entries in the readers' order, made once for the index
        (it answers one snapshot): where they must all be numbered (``_numbering``: "every")."""
        numbers = self._numbers.get(key)
        if numbers is None:
            from tracklet.core.run_tables import version_numbers

            made = array("q", version_numbers(self.of_key(key)))
            numbers = self._numbers.setdefault(key, made)  # (two requests made it at once: one is kept, charged once)
            if numbers is made:
                self._grow(sys.getsizeof(numbers) + _VIEW_BYTES)
        return numbers

    def _step_view(self, key: str, helds: list[_Held]) -> _StepView:
        """``key``'s entries sorted by step (``_StepView``), made once for the index, as
        ``_numbers_of`` is, and charged to it (``bytes``, ``grown``)."""
        view = self._steps.get(key)
        if view is None:
            places = {id(tables): place for place, tables in enumerate(self.writers)}
            made = _StepView(helds, [places[id(held.tables)] for held in helds])
            view = self._steps.setdefault(key, made)  # (as ``_numbers_of``)
            if view is made:
                self._grow(view.bytes + _VIEW_BYTES)
        return view

    def _grow(self, size: int) -> None:
        """``bytes`` grown by ``size`` (under the index's lock: requests of one run share its
        index, and read it outside the run's lock), then charged (``grown``)."""
        with self._grow_lock:
            self.bytes += size
        if self.grown is not None:
            self.grown()

    @staticmethod
    def _rows_so_far(helds: list[_Held], place: int, entry: int, kept: dict[str, tuple[int, int]]) -> int:
        """The rows of the table of INCREMENTAL entry ``entry`` (of writer ``helds[place]``) up to
        it, in the readers' order: every earlier
        writer's increments of it (the last of their ``_Increments.rows``; kept per table id
        while the page stays in one writer) and this writer's up to it (bisected)."""
        tables = helds[place].tables
        table_id = tables.strings[tables.table_ids[entry]]
        before = kept.get(table_id)
        if before is None or before[0] != place:
            rows = 0
            for earlier in helds[:place]:
                found = earlier.increments(table_id)
                if found is not None:
                    rows = min(_MOST, rows + found[0].rows[found[1] - 1])
            kept[table_id] = before = (place, rows)
        found = helds[place].increments(table_id)
        if found is None:  # (not in a snapshot that holds the entry: never)
            return int(tables.rows[entry])
        group, size = found
        return min(_MOST, before[1] + group.rows[bisect.bisect_left(group.places, entry, 0, size)])

    def __iter__(self) -> Iterator[TableRef]:
        for tables, count in zip(self.writers, self._counts):
            for place in range(count):
                yield TableRef(tables, place)


def version_refs(index: _Index, key: str, step: int | None = None) -> list[TableRef]:
    """``version_records`` of ``key``'s entries (``_Index.at_step``); ``TableNotFound`` naming
    the keys the run logged."""
    from tracklet.media.table_read import version_records

    chosen = index.at_step(key, step)
    if chosen:
        return chosen
    return version_records([*index.firsts(), *index.of_key(key)], key, step)  # (raises, naming every key)


def _index_bytes(run: Any) -> int:
    """What a run's kept index (``_records``' view) keeps beyond the folds (``_Index.bytes``)."""
    kept = run.memo.get("index")
    return kept[1].bytes if kept is not None else 0


_FOLDS: LogFolds[_Tables] = LogFolds(_Tables, _Tables.apply, size=64, located=True,  # runs kept
                                     measure=lambda tables: tables.bytes, run_bytes=INDEX_RUN_BYTES,
                                     total_bytes=INDEX_BYTES, memo_measure=_index_bytes)


class _Kept:
    """The whole records last read back (``load``), up to ``RECORDS_KEPT_BYTES`` of their
    serialized size, by where they are (the log, the frame's offset, length and payload's crc32:
    not by entry, so a kept record never keeps a dropped index alive)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: OrderedDict[tuple[str, int, int, int], tuple[Any, int]] = OrderedDict()
        self.bytes = 0

    @staticmethod
    def _key(ref: TableRef) -> tuple[str, int, int, int]:
        return str(ref.tables.copy.log_file), ref.offset, ref.length, ref.crc

    def get(self, ref: TableRef) -> Any:
        key = self._key(ref)
        with self.lock:
            kept = self.records.get(key)
            if kept is None or not ref.matches(kept[0]):
                return None
            self.records.move_to_end(key)
            return kept[0]

    def put(self, ref: TableRef, record: Any, size: int) -> None:
        key = self._key(ref)
        with self.lock:
            if key in self.records or size > RECORDS_KEPT_BYTES:
                return
            self.records[key] = (record, size)
            self.bytes += size
            while self.bytes > RECORDS_KEPT_BYTES:
                _, (_, dropped) = self.records.popitem(last=False)
                self.bytes -= dropped


_KEPT = _Kept()


def _read_back(source: Any, ref: TableRef) -> Any:
    """The ``TableLogged`` record ``ref`` was made of, read from its log by offset; None when the
    log holds another there (or none)."""
    from tracklet.core.decode import RecordDecoder
    from tracklet.core.recordlog import FRAME_HEADER

    result = source.read_from(ref.tables.copy, ref.offset, limit=ref.length, bound=ref.length)
    for offset, payload in result.payloads:
        if offset == ref.offset and FRAME_HEADER.size + len(payload) == ref.length and zlib.crc32(payload) == ref.crc:
            record = RecordDecoder().decode(offset, payload)
            if record is not None and record.WhichOneof("kind") == "table_logged" and ref.matches(record.table_logged):
                table = record.table_logged
                _KEPT.put(ref, table, len(payload))
                return table
        break
    return None


ASK_AGAIN: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": (
    "The run's logs were rewritten in place twice while they were read (a stale index entry found, the run "
    "indexed again, and again): nothing was answered from them; ask again")}}


def scan(request: Request, project: str, run_id: str, pick: Callable[[_Index], list[TableRef]],
         consume: Callable[[list[Any]], Any], batch: int | None = None) -> Any:
    """``consume(records)`` of the whole ``TableLogged`` records of the entries ``pick(index)``
    chooses of the run's (``_records``; it raises what a request answers for none), in order,
    ``batch`` at a time (all at once without it), until one returns other than None, which is
    returned (None if none does): kept ones, or read back from their logs by offset, so a request
    holds one batch of records, not all its entries'. A log that no longer holds an entry's record
    there (rewritten in place since it was indexed): the run's index is dropped and the run indexed
    again, and read from its first batch, once; 503 if that happens again (``ASK_AGAIN``)."""
    from tracklet.server.logs import run_paths

    source = request.app.state.tracklet.indexer.source
    for _ in range(2):
        refs = pick(_records(request, project, run_id))
        step = batch or max(1, len(refs))
        stale = False
        for start in range(0, len(refs), step):
            records = []
            for ref in refs[start:start + step]:
                record = _KEPT.get(ref)
                if record is None:
                    try:
                        record = _read_back(source, ref)
                    except OSError:
                        record = None
                    if record is None:
                        stale = True
                        break
                records.append(record)
            if stale:
                break
            answer = consume(records)
            if answer is not None:
                return answer
        if not stale:
            return None
        _FOLDS.forget(str(run_paths(request.app.state.tracklet.root, project, run_id).run_dir))
    raise HTTPException(status_code=503, detail=f"run {project}/{run_id}'s logs changed while they were read; "
                        "ask again")


def load(request: Request, project: str, run_id: str, pick: Callable[[_Index], list[TableRef]]) -> list[Any]:
    """The whole ``TableLogged`` records of the entries ``pick(index)`` chooses, in order
    (``scan`` in one batch): kept ones, or read back from their logs; 503 as ``scan`` says."""
    records: list[Any] = scan(request, project, run_id, pick, lambda records: records)
    return records if records is not None else []


def _charge(key: str, run: Any) -> None:
    """``_FOLDS.charge`` of run ``key`` while it is (its index's ``grown``)."""
    if run is not None:
        _FOLDS.charge(key, run)


def _records(request: Request, project: str, run_id: str) -> _Index:
    """The run's table index (``_Index``: entries as ``TableRef``s), as the log reader lists the
    records: its own log's, then each shared-run part's by label (docs/shared-runs.md); 404 unless
    the server knows the run (its store has it: a file under the root alone is not enough, so
    access follows the project's members). ``load`` reads the records themselves."""
    from tracklet.core.parts import PRIMARY
    from tracklet.server.logs import run_paths

    paths = run_paths(request.app.state.tracklet.root, project, run_id)
    key = str(paths.run_dir)  # (the run's key in ``_FOLDS``: ``get_run``'s)

    def view(run: Any) -> _Index:
        kept = run.memo.get("index")
        if kept is not None and kept[0] == run.generation:  # nothing folded since: that snapshot holds (O(1))
            index: _Index = kept[1]
            return index
        writers: list[_Tables] = []
        for label, entry in run.entries.items():
            tables = entry.state
            if tables.copy is None:
                tables.copy = paths if label == PRIMARY else paths.part_paths(label)
            writers.append(tables)
        index = _Index(writers, list(run.entries))
        held = weakref.ref(run)  # (not the run itself: the index is in its memo)
        index.grown = lambda: _charge(key, held())  # (a view made as a request reads it: charged then)
        run.memo["index"] = (run.generation, index)
        return index

    # (the folds go on as the logs grow; every writer's log read on from where it stopped)
    return run_fold(_FOLDS, request, project, run_id, view)


def version_choice(project: str, run_id: str, key: str, step: int | None,
                   version: int | None) -> Callable[[_Index], list[TableRef]]:
    """What chooses the entries of table ``key``'s version at ``step`` (default: the latest), or
    of run-table version ``version`` by its record (a shared run's writers may log the key at one
    step), as ``open_table`` takes them; it raises 404 naming what's missing."""
    if version is not None:
        def by_version(index: _Index) -> list[TableRef]:
            chosen = index.version(key, version)
            if chosen is None:
                raise HTTPException(status_code=404, detail=f"no version v{version} of table {key!r} in run "
                                    f"{project}/{run_id}")
            return chosen

        return by_version

    def by_step(index: _Index) -> list[TableRef]:
        try:
            return version_refs(index, key, step)
        except TableNotFound as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    return by_step


def chosen_records(request: Request, project: str, run_id: str, key: str, step: int | None,
                   version: int | None) -> tuple[list[Any], int | None]:
    """The whole records of table ``key``'s version at ``step`` (default: the latest), or of
    run-table version ``version`` by its record (``version_choice``), as ``open_table`` takes
    them, with the step to give it; 404 naming what's missing."""
    records = load(request, project, run_id, version_choice(project, run_id, key, step, version))
    return records, (None if version is not None else step)


def fragment_source(request: Request, project: str) -> dict[str, Any]:
    """Where a query of ``project``'s tables finds its Parquet fragments (``open_table``'s
    ``locate``/``where``): the server's blob store, only fragments the project holds."""
    blobs = media_blobs(request)
    return {"locate": lambda digest: blobs.local_file(project, digest),
            "where": f"the server's blob store for project {project} (not uploaded yet? `tracklet sync` sends it)"}


@router.get("/{project}/{run_id}/tables", response_model=TableKeysResponse, responses=_ERRORS,
            summary="The keys a run logged tables under")
def get_table_keys(request: Request, project: str, run_id: str) -> TableKeysResponse:
    from tracklet.media.table_read import table_keys

    return TableKeysResponse(keys=table_keys(_records(request, project, run_id).firsts()))


@router.get("/{project}/{run_id}/tables/{key:path}", response_model=TableRowsResponse,
            responses={**_ERRORS, **ASK_AGAIN},
            summary="A page of a logged table, filtered and sorted")
def get_table(
    request: Request,
    project: str,
    run_id: str,
    key: str,
    step: int | None = Query(None, ge=0, le=2**63 - 1, description="The version at this step (default: the latest)"),
    filter: str | None = Query(None, max_length=4096, description="e.g. score > 0.9 and label = 'cat' "
                               "(docs/tables.md: the filter language)"),
    sort: str | None = Query(None, max_length=1024, description="A column to sort by"),
    descending: bool = Query(False, description="Sort descending"),
    offset: int = Query(0, ge=0, le=2**62, description="Rows to skip"),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="Rows at most"),
    version: int | None = Query(None, ge=0, le=2**62, description="The version v<n> of run table run-<id>-<key> "
                                "(docs/tables.md#lineage), instead of `step`"),
) -> TableRowsResponse:
    """Rows `offset` to `offset + limit` of the table logged under `key` (its version at `step`,
    or run-table version `version`; for an INCREMENTAL table every increment up to it), after
    `filter` and `sort` (ties and no sort: the order rows were added; nulls last)."""
    from tracklet.media.table_read import open_table

    records, step = chosen_records(request, project, run_id, key, step, version)
    try:
        query = open_table(request.app.state.tracklet.root, records, key, step, **fragment_source(request, project))
    except TableNotFound as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    except TableError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    if filter:
        query = query.filter(filter)  # FilterSyntaxError: a ValueError, 400 naming the problem
    if sort:
        query = query.sort(sort, descending=descending)
    total = query.count()
    page = query.page(offset, limit).to_arrow()
    names = page.column_names
    rows = [json_safe([row[name] for name in names]) for row in page.to_pylist()]
    schema = query.schema
    return TableRowsResponse(key=key, step=query.step, log_mode=query.log_mode,  # type: ignore[arg-type]
                             columns=[TableColumn(name=name, type=schema[name]) for name in names],
                             total=total, offset=offset, rows=rows,
                             chart=TableChart(**query.chart) if query.chart else None)
