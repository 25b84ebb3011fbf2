"""The store-backed queue's semantics, on a folder and on a real S3 (SeaweedFS)."""

from __future__ import annotations

import threading
import time

import pytest

from training.jobs.config import JobConfig
from training.jobs.errors import JobConflict, JobFileNotFound, JobNotCancellable, JobNotFound, LeaseLost
from training.jobs.queue import JobQueue

CSV = b"text,label\ngood film,pos\nbad film,neg\n"


def submit(queue: JobQueue, task: str = "sentiment", key: str | None = None, **config) -> object:
    file = queue.put_file(CSV, "train.csv", 2, ["text", "label"])
    return queue.submit(JobConfig.parse({"task": task, **config}), {"train": file.id}, key)


def test_submit_get_list_pages_newest_first(queue):
    jobs = [submit(queue, f"t{i}") for i in range(5)]
    assert all(j.status == "queued" for j in jobs)
    assert queue.get(jobs[2].id).task == "t2"
    page, cursor = queue.list(limit=2)
    assert [j.id for j in page] == [jobs[4].id, jobs[3].id] and cursor == jobs[3].id
    page, cursor = queue.list(limit=2, after=cursor)
    assert [j.id for j in page] == [jobs[2].id, jobs[1].id]
    page, cursor = queue.list(limit=2, after=cursor)
    assert [j.id for j in page] == [jobs[0].id] and cursor is None
    assert [j.id for j in queue.list(task="t3")[0]] == [jobs[3].id]
    assert queue.list(status="running")[0] == []
    with pytest.raises(JobNotFound):
        queue.get("job-" + "0" * 24)
    with pytest.raises(JobNotFound):
        queue.get("../../etc/passwd")
    with pytest.raises(JobFileNotFound):
        queue.submit(JobConfig.parse({"task": "t"}), {"train": "file-" + "1" * 24})


def test_files_round_trip(queue):
    file = queue.put_file(CSV, "train.csv", 2, ["text", "label"])
    assert queue.file(file.id).to_dict() == file.to_dict()
    assert queue.file_bytes(file.id) == CSV
    assert file.to_dict()["object"] == "file" and len(file.id) == len("file-") + 24


def test_idempotency_key_gives_the_same_job_and_refuses_another_config(queue):
    file = queue.put_file(CSV, "train.csv", 2, ["text", "label"])
    config = JobConfig.parse({"task": "sentiment"})
    first = queue.submit(config, {"train": file.id}, "key-1")
    assert queue.submit(config, {"train": file.id}, "key-1").id == first.id
    with pytest.raises(JobConflict):
        queue.submit(JobConfig.parse({"task": "sentiment", "publish": "never"}), {"train": file.id}, "key-1")
    # Eight submits racing with one key make one job.
    ids, threads = [], []
    for _ in range(8):
        threads.append(threading.Thread(target=lambda: ids.append(queue.submit(config, {"train": file.id}, "key-2").id)))
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(ids)) == 1 and len(ids) == 8
    assert len(queue.list(limit=100)[0]) == 2


def test_two_workers_compete_no_job_twice_none_lost(make_objects):
    producer = JobQueue(make_objects())
    jobs = {submit(producer, f"t{i}").id for i in range(12)}
    claimed: list[tuple[str, str]] = []

    def work(name: str) -> None:
        queue = JobQueue(make_objects())  # each worker its own client, as two processes would
        while (lease := queue.claim(name, lease_s=30)) is not None:
            claimed.append((lease.job_id, name))
            queue.event(lease, "message", "trained")
            queue.finish(lease, "succeeded", {"published": True, "version": 1})

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(j for j, _ in claimed) == sorted(jobs)  # each exactly once
    records = [producer.get(j) for j in jobs]
    assert all(r.status == "succeeded" and r.attempts == 1 for r in records)
    assert len({w for _, w in claimed}) >= 2  # they really competed
    assert producer.claim("late") is None


def test_an_expired_lease_is_requeued_and_the_old_holder_is_refused(queue):
    job = submit(queue)
    first = queue.claim("w1", lease_s=0.3)
    assert first.attempt == 1 and queue.claim("w2", lease_s=0.3) is None
    time.sleep(0.5)
    assert queue.lease_state(first) == "ok"  # expired, but nobody took it yet: a late renew would keep it
    second = queue.claim("w2", lease_s=30)
    assert second.job_id == job.id and second.attempt == 2
    assert queue.heartbeat(first) is False
    assert queue.lease_state(first) == "lost"
    with pytest.raises(LeaseLost):
        queue.finish(first, "succeeded")
    assert queue.heartbeat(second, {"step": 3}) is True
    assert queue.finish(second, "succeeded").status == "succeeded"
    messages = [e["message"] for e in queue.events(job.id)]
    assert any("lease of worker w1 expired" in m for m in messages)


def test_after_max_attempts_the_job_fails_with_the_reason(queue):
    job = submit(queue, max_attempts=2)
    for _ in range(2):
        assert queue.claim("w", lease_s=0.2) is not None
        time.sleep(0.35)
    assert queue.claim("w") is None
    record = queue.get(job.id)
    assert record.status == "failed" and record.attempts == 2
    assert "max_attempts=2" in record.error and "worker w" in record.error
    assert queue.events(job.id)[-1]["level"] == "error"


def test_cancel_queued_running_and_ended(queue):
    queued = submit(queue, "a")
    assert queue.cancel(queued.id).status == "cancelled"
    running = submit(queue, "b")
    lease = queue.claim("w")
    assert lease.job_id == running.id  # the cancelled job is never claimed
    record = queue.cancel(running.id)
    assert record.status == "running" and record.cancel_requested
    assert queue.heartbeat(lease) is False and queue.lease_state(lease) == "cancel"
    queue.finish(lease, "cancelled")
    with pytest.raises(JobNotCancellable):
        queue.cancel(running.id)
    with pytest.raises(JobNotCancellable):
        queue.cancel(queued.id)


def test_events_append_in_order_and_page_with_after(queue):
    job = submit(queue)
    lease = queue.claim("w")
    for i in range(5):
        queue.event(lease, "progress", f"step {i}", {"step": i})
    events = queue.events(job.id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    tail = queue.events(job.id, after=events[-3]["seq"])
    assert [e["message"] for e in tail] == ["step 3", "step 4"]
    # A second writer (another process's queue object) appends after, never over.
    JobQueue(queue.objects).cancel(job.id)
    assert queue.events(job.id)[-1]["seq"] == events[-1]["seq"] + 1


def test_artifacts(queue):
    job = submit(queue)
    lease = queue.claim("w")
    queue.put_artifact(lease, "report.json", b"{}")
    queue.put_artifact(lease, "report.json", b'{"a": 1}')
    queue.put_artifact(lease, "learning_curves.png", b"\x89PNG")
    assert sorted(queue.artifacts(job.id)) == ["learning_curves.png", "report.json"]
    assert queue.artifact(job.id, "report.json") == b'{"a": 1}'
    with pytest.raises(Exception, match="no artifact"):
        queue.artifact(job.id, "../records")
    with pytest.raises(ValueError):
        queue.put_artifact(lease, "../x", b"")


def test_replace_is_a_compare_and_swap_under_contention(make_objects):
    objects = make_objects()
    assert objects.replace("counter", b"0", None)
    assert not objects.replace("counter", b"0", None)  # exists: a create-if-absent fails

    def bump() -> None:
        mine = make_objects()
        for _ in range(15):
            while True:
                body, etag = mine.get("counter")
                if mine.replace("counter", str(int(body) + 1).encode(), etag):
                    break

    threads = [threading.Thread(target=bump) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert objects.get("counter")[0] == b"60"
    assert not objects.replace("counter", b"x", "stale-etag")


def test_a_cancel_ends_a_running_job_at_once_unless_its_publish_began(queue):
    early, late = submit(queue, "early"), submit(queue, "late")
    first = queue.claim("w")
    assert queue.end_cancelled(first) is None  # no cancel asked
    queue.cancel(early.id)
    ended = queue.end_cancelled(first)
    assert ended.status == "cancelled" and not ended.result["published"]
    assert queue.heartbeat(first) is False and queue.lease_state(first) == "lost"
    with pytest.raises(LeaseLost):
        queue.mark_publishing(first)  # so nothing is published after a cancel
    second = queue.claim("w")
    queue.mark_publishing(second)
    queue.cancel(late.id)
    assert queue.end_cancelled(second) is None  # too late: the publish has begun and goes on
    assert queue.finish(second, "succeeded").status == "succeeded"
    assert [e["message"] for e in queue.events(early.id)].count("cancelled") == 1
