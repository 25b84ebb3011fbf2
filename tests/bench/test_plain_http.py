"""bench/plain_http.py: the plain loop behind HTTP answers each request from its own row of a shared batch."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from bench.plain_http import App, Batcher


def test_each_request_gets_its_own_rows_answer_and_bad_bodies_get_a_422():
    seen: list[int] = []

    def step(texts: list[str]) -> np.ndarray:  # positive exactly for texts that say so
        seen.append(len(texts))
        return np.array([[0.0, 4.0] if "good" in t else [4.0, 0.0] for t in texts], dtype=np.float32)

    async def scenario() -> None:
        app = App(step, batch=8)
        app.batcher = Batcher(step, 8, asyncio.get_running_loop(), app.rows)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://plain") as client:
            texts = [("good film" if i % 3 else "bad film") for i in range(20)]
            answers = await asyncio.gather(*(client.post("/predict/t", json={"inputs": t}) for t in texts))
            assert [a.json()["label"] for a in answers] == ["POSITIVE" if "good" in t else "NEGATIVE" for t in texts]
            assert all(a.json()["score"] > 0.98 for a in answers)
            for body in (b"{", b'{"inputs": 3}', b"[]"):
                bad = await client.post("/predict/t", content=body)
                assert bad.status_code == 422 and "inputs" in bad.json()["error"]
            metrics = (await client.get("/metrics")).text
            assert f"bitfit_batch_rows_count {float(len(seen))}" in metrics and "bitfit_batch_rows_sum 20.0" in metrics

    asyncio.run(scenario())
    assert sum(seen) == 20 and max(seen) <= 8
