"""Rolling snapshots: a round writes O(changes since the last one), readers always see a
whole catalog, and an older store's whole snapshot is taken over once."""

from __future__ import annotations

import hashlib
import json
import random
import threading

from bias_store import rolling
from bias_store.backends.folder.objects import FolderObjects
from bias_store.changelog import Change, ChangeLog, dump_snapshot, fold


class CountingObjects(FolderObjects):
    """A folder that counts the bytes each create writes."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.written: dict[str, int] = {}

    def create(self, key, body, metadata=None):
        self.written[key] = len(body)
        return super().create(key, body, metadata)


def sha(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


def seeded(root, n: int) -> tuple[CountingObjects, dict]:
    """A log whose whole snapshot at generation 0 holds ``n`` tasks (as an older store's)."""
    objects = CountingObjects(root)
    catalog = {f"t{i:06d}": Change(0, f"t{i:06d}", 1, sha(i)) for i in range(n)}
    objects.create("snapshots/000000000000.json", dump_snapshot(0, catalog))
    return objects, catalog


def test_a_round_writes_o_of_its_changes_not_the_catalog(tmp_path):
    objects, catalog = seeded(tmp_path, 20_000)
    log = ChangeLog(objects, compact_every=10**9)  # rounds by hand
    rng = random.Random(1)
    generation, rounds = 0, []
    for k in (10, 10, 100, 100, 1000, 1000):
        for _ in range(k):
            name = f"t{rng.randrange(20_000):06d}"
            digest = sha(rng.randrange(10**9))
            generation = log.append(name, 2, digest)
            catalog = fold(catalog, [Change(generation, name, 2, digest)])
        objects.written.clear()
        log.compact(generation)
        rounds.append((k, dict(objects.written)))
    whole = len(dump_snapshot(0, catalog))
    first_k, first = rounds[0]
    assert sum(first.values()) > 0.9 * whole  # the first round takes the whole snapshot over: every part once
    part_bytes = whole / rolling.PARTS * 1.5  # one part, with room for hashing's uneven split
    for k, written in rounds[1:]:
        layers = sum(v for key, v in written.items() if "/layers/" in key)
        parts = [key for key in written if "/parts/" in key]
        manifest = sum(v for key, v in written.items() if key.count("/") == 1)
        assert layers <= 120 * k  # one entry a change (~100 bytes), however large the catalog
        assert len(parts) <= rolling.PARTS_PER_ROUND and sum(written[p] for p in parts) <= rolling.PARTS_PER_ROUND * part_bytes
        assert manifest < 40_000
        assert sum(written.values()) <= 120 * k + rolling.PARTS_PER_ROUND * part_bytes + 40_000
        assert k > 100 or sum(written.values()) < whole / 10
    assert ChangeLog(FolderObjects(tmp_path)).catalog() == (generation, catalog)


def test_every_part_turns_over_and_old_layers_and_parts_go(tmp_path):
    objects, catalog = seeded(tmp_path, 3_000)
    log = ChangeLog(objects, compact_every=10)
    rng = random.Random(2)
    for g in range(1, 10 * (rolling.PARTS // rolling.PARTS_PER_ROUND + 5) + 1):
        name = f"t{rng.randrange(3_500):06d}"
        change = Change(g, name, None, None) if rng.random() < 0.1 else Change(g, name, 3, sha(g))
        assert log.append(name, change.version, change.sha256) == g
        catalog = fold(catalog, [change])
    assert log.wait_compacted(timeout=120)
    manifest = rolling.Rolling.loads((tmp_path / "snapshots" / f"{g - g % 10:012d}.json").read_bytes())
    assert len(manifest.layers) <= rolling.PARTS // rolling.PARTS_PER_ROUND + 1  # layers older than every part are gone
    # The newest snapshot and the one before it stay (a busy compactor skips rounds, so that
    # one is not always ten generations back); parts named by neither are gone.
    snapshots = sorted(int(p.stem) for p in (tmp_path / "snapshots").glob("*.json"))
    assert len(snapshots) == 2 and snapshots[-1] == manifest.generation
    kept = {f"snapshots/parts/{p.name}" for p in (tmp_path / "snapshots" / "parts").iterdir()}
    assert kept <= rolling.referenced(manifest) | _previous_refs(tmp_path, snapshots[0])
    assert ChangeLog(FolderObjects(tmp_path)).catalog() == (g, catalog)  # a replica starting now


def _previous_refs(root, generation: int) -> set[str]:
    return rolling.referenced(rolling.Rolling.loads((root / "snapshots" / f"{generation:012d}.json").read_bytes()))


def test_a_restarted_writer_continues_from_the_stored_manifest(tmp_path):
    objects, catalog = seeded(tmp_path, 2_000)
    for process in range(3):  # each "process" a ChangeLog of its own: no state but what is stored
        log = ChangeLog(FolderObjects(tmp_path), compact_every=25)
        for _ in range(60):
            g = log.head() + 1
            name = f"t{(g * 7919) % 2_100:06d}"
            assert log.append(name, process + 2, sha(g)) == g
            catalog = fold(catalog, [Change(g, name, process + 2, sha(g))])
        assert log.wait_compacted(timeout=60)
    assert ChangeLog(FolderObjects(tmp_path)).catalog() == (180, catalog)
    assert json.loads((tmp_path / "snapshots" / "000000000175.json").read_bytes())["format"] == 2


def test_readers_see_a_whole_catalog_while_rounds_are_written(tmp_path):
    """A reader's catalog at generation g is exactly every change up to g, however the
    rounds (layers written, parts rewritten, old objects deleted) interleave with it."""
    objects, start = seeded(tmp_path, 5_000)
    writer = ChangeLog(FolderObjects(tmp_path), compact_every=10)
    done, history, seen, errors = threading.Event(), [], [], []

    def write():
        rng = random.Random(3)
        for _ in range(800):
            name = f"t{rng.randrange(5_500):06d}"
            version, digest = (None, None) if rng.random() < 0.1 else (2, sha(rng.randrange(10**9)))
            g = writer.append(name, version, digest)
            assert g == len(history) + 1
            history.append(Change(g, name, version, digest))
        writer.wait_compacted(timeout=120)
        done.set()

    def read():
        while not done.is_set():
            try:
                seen.append(ChangeLog(FolderObjects(tmp_path)).catalog())
            except Exception as exc:  # noqa: BLE001 - any failure to read a whole catalog fails the test
                errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(seen) >= 3
    for generation, catalog in seen:
        assert catalog == fold(start, history[:generation]), generation
