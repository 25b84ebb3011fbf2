"""What a job's training tells the queue as it goes: progress and ETA (bounded in rate),
one metrics entry per evaluation, and the cancel check that stops the loop at its next step."""

from __future__ import annotations

import time

from training.jobs.errors import Cancelled, LeaseLost
from training.jobs.heartbeat import Heartbeat
from training.jobs.leases import CANCEL, LOST

EVENT_S = 5.0  # the fastest a "progress" event is appended (the record's progress is fresher)


class JobProgress:
    """The training loop's observer (TrainConfig.observer) for one job."""

    def __init__(self, queue, heartbeat: Heartbeat, event_s: float = EVENT_S, clock=time.monotonic) -> None:
        self.queue, self.heartbeat, self.event_s, self.clock = queue, heartbeat, event_s, clock
        self.started = clock()
        self.metrics: list[dict] = []
        self.learning_rate: float | None = None
        self._train_start: tuple[float, int] | None = None  # (when, step) of the first training step
        self._last_event = -float("inf")

    def check(self) -> None:
        """Raise Cancelled / LeaseLost when the heartbeat saw a cancel or lost the lease."""
        if self.heartbeat.state == CANCEL:
            raise Cancelled(f"job {self.heartbeat.lease.job_id} was cancelled")
        if self.heartbeat.state == LOST:
            raise LeaseLost(f"job {self.heartbeat.lease.job_id}: the lease was lost (another worker may run it)")

    def __call__(self, info: dict) -> None:
        self.check()
        phase = info["phase"]
        if phase == "evaluation":
            self._evaluated(info)
        elif phase == "train":
            self._step(info)
        elif phase == "lr_search" and self.clock() - self._last_event >= self.event_s:
            self._last_event = self.clock()
            self.heartbeat.update({"phase": "lr_search", "elapsed_s": round(self.clock() - self.started, 1)})
            self.queue.event(self.heartbeat.lease, "progress", "choosing the learning rate on validation",
                             {"phase": "lr_search", "lr": info.get("base_lr")})

    def _step(self, info: dict) -> None:
        now = self.clock()
        if self._train_start is None:
            self._train_start = (now, info["step"])  # the ETA counts from the end of the first step
            self.learning_rate = info.get("base_lr")
            self.heartbeat.update(learning_rate=self.learning_rate)
        since, first = self._train_start
        done = info["step"] - first
        eta = (now - since) / done * (info["total_steps"] - info["step"]) if done else None
        progress = {"phase": "train", "epoch": info["epoch"], "epochs": info["epochs"], "step": info["step"],
                    "total_steps": info["total_steps"], "eta_s": None if eta is None else round(eta, 1),
                    "elapsed_s": round(now - self.started, 1)}
        self.heartbeat.update(progress)
        if now - self._last_event >= self.event_s or info["step"] == info["total_steps"]:
            self._last_event = now
            eta_text = f", ETA {eta:.0f} s" if eta is not None else ""
            self.queue.event(self.heartbeat.lease, "progress",
                             f"epoch {info['epoch']}/{info['epochs']}, step {info['step']}/{info['total_steps']}{eta_text}",
                             progress)

    def _evaluated(self, info: dict) -> None:
        entry = {"epoch": info["epoch"], "step": info["step"], "train_loss": info["train_loss"],
                 "validation_loss": info.get("validation_loss"), "validation": info["validation"]}
        self.metrics.append(entry)
        self.heartbeat.update(metrics=list(self.metrics))
        shown = ", ".join(f"{k} {v:.4f}" for k, v in info["validation"].items() if isinstance(v, float))
        self.queue.event(self.heartbeat.lease, "metrics", f"epoch {info['epoch']}: train loss {info['train_loss']:.4f}; "
                         f"validation {shown}", entry)
        self.check()
