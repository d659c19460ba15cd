"""Classifiers over HTTP, beside the chat endpoints of ``serve``: the shape Hugging Face
text-embeddings-inference uses for sequence classification.

    POST /predict?model=3   {"inputs": "Profit fell"}        -> [{"label", "score"}, ...]
                            {"inputs": ["a", "b"]}           -> [[...], [...]]
                            {"inputs": "...", "raw_scores": true}   logits, not probabilities
    GET  /info                                               -> the models served

The model is a model reference (``references.py``; the active sentiment model by default).
Requests queue for one scoring thread, which takes whatever has queued since its last batch
and scores it together (as TEI batches), so many small requests cost about what one large one
does. At most ``MAX_TEXTS`` texts a request; longer texts are cut as scoring cuts them, and the
``X-Truncated`` header says how many were.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, StrictBool, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.models import references, registry
from devmode.serving import RequestError, Strict, field_path, read_json

MAX_TEXTS = 256
DEFAULT_MODEL = "active-sentiment"
# Texts scored together at most, from all the requests that queued.
MAX_BATCH_TEXTS = 512
ROUTES_HELP = "Use POST /predict or GET /info."


class PredictRequest(Strict):
    inputs: StrictStr | list[StrictStr] = Field(union_mode="left_to_right")
    raw_scores: StrictBool = False


def describe_predict_error(error: ValidationError) -> tuple[str, str]:
    errors = error.errors()
    first = max(errors, key=lambda e: len(field_path(e)[0]))  # the deepest: inputs[3], not inputs
    loc, path = field_path(first)
    if loc and loc[0] == "inputs" and first["type"] != "missing":
        found = first.get("input")
        shown = type(found).__name__ if not isinstance(found, str | int | float) else repr(found)
        where = f" ({path})" if path != "inputs" else ""
        return (
            f"'inputs' must be a text or a list of texts{where}; found {shown}.",
            path or "inputs",
        )
    if first["type"] == "missing":
        return f"{path} is required.", path
    return f"{path}: {first['msg']}; found {first.get('input')!r}.", path


@dataclass
class _Job:
    chosen: references.ChosenModel
    texts: list[str]
    raw: bool
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future
    results: Any = field(default=None)


class Batcher:
    """One thread scores for every request: it takes what has queued (up to
    ``MAX_BATCH_TEXTS`` texts of one model) and scores it in one call."""

    def __init__(self, cache: references.ModelCache):
        self.cache = cache
        self.waiting: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="devmode-classifier", daemon=True)
        self.thread.start()

    async def score(self, chosen, texts: list[str], raw: bool):
        loop = asyncio.get_running_loop()
        job = _Job(chosen, texts, raw, loop, loop.create_future())
        self.waiting.put(job)
        return await job.done

    def close(self) -> None:
        self.waiting.put(None)

    def _run(self) -> None:
        held: list[_Job] = []
        while True:
            job = held.pop(0) if held else self.waiting.get()
            if job is None:
                return
            batch, size = [job], len(job.texts)
            while size < MAX_BATCH_TEXTS:
                try:
                    other = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if other is None:
                    held.append(other)
                    break
                if other.chosen.key == job.chosen.key and other.raw == job.raw:
                    batch.append(other)
                    size += len(other.texts)
                else:
                    held.append(other)
            self._score(batch)

    def _score(self, batch: list[_Job]) -> None:
        try:
            scorer = self.cache.scorer(batch[0].chosen)
            texts = [t for job in batch for t in job.texts]
            values = scorer.raw_scores(texts) if batch[0].raw else scorer.score(texts).probabilities
            truncated = scorer.truncated(texts)
            at = 0
            for job in batch:
                n = len(job.texts)
                job.results = (values[at : at + n], truncated[at : at + n], scorer.label_names)
                at += n
                job.loop.call_soon_threadsafe(_settle, job.done, job.results, None)
        except BaseException as e:  # noqa: BLE001 - each waiting request answers with it
            for job in batch:
                job.loop.call_soon_threadsafe(_settle, job.done, None, e)


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def classifier_routes(
    db_path: str,
    authorize: Callable[[Request], None],
    log: Callable[[str], None] = lambda line: None,
) -> tuple[list[Route], Callable[[], None]]:
    """The ``/predict`` and ``/info`` routes over the models of ``db_path``, and what stops
    their scoring thread."""
    batcher = Batcher(references.ModelCache())

    def choose(request: Request) -> references.ChosenModel:
        asked = request.query_params.get("model", DEFAULT_MODEL)
        try:
            with open_db(db_path) as db:
                return references.resolve(db, asked)
        except references.UnknownModel as e:
            raise RequestError(404, str(e), "model") from None
        except DevmodeError as e:
            raise RequestError(422, str(e), "model") from None

    async def predict(request: Request) -> Response:
        authorize(request)
        body = await read_json(request, 'a predict request: {"inputs": ...}')
        try:
            asked = PredictRequest.model_validate(body)
        except ValidationError as e:
            raise RequestError(422, *describe_predict_error(e)) from None
        single = isinstance(asked.inputs, str)
        texts = [asked.inputs] if single else list(asked.inputs)
        if not texts:
            raise RequestError(422, "'inputs' is an empty list; send at least one text.", "inputs")
        if len(texts) > MAX_TEXTS:
            raise RequestError(
                422,
                f"'inputs' holds {len(texts)} texts; at most {MAX_TEXTS} a request. Send them "
                "in several requests.",
                "inputs",
            )
        for i, text in enumerate(texts):
            if not text.strip():
                where = "inputs" if single else f"inputs[{i}]"
                raise RequestError(422, f"{where} is empty; send some words to classify.", where)
        chosen = choose(request)
        values, truncated, labels = await batcher.score(chosen, texts, asked.raw_scores)
        answers = [
            sorted(
                (
                    {"label": label, "score": round(float(v), 6)}
                    for label, v in zip(labels, row, strict=True)
                ),
                key=lambda item: -item["score"],
            )
            for row in np.asarray(values)
        ]
        log(f"POST /predict {chosen.reference} {len(texts)} texts")
        return JSONResponse(
            answers[0] if single else answers,
            headers={"X-Truncated": str(int(np.sum(truncated)))},
        )

    async def info(request: Request) -> Response:
        authorize(request)
        with open_db(db_path) as db:
            served = []
            for model in registry.list_models(db):
                try:
                    chosen = references.resolve(db, str(model.run_id))
                except DevmodeError:
                    continue
                served.append(
                    {
                        "model": chosen.reference,
                        "title": chosen.title,
                        "labels": chosen.labels,
                        "active_as": model.active_as,
                    }
                )
            try:
                default = references.resolve(db, DEFAULT_MODEL).title
            except DevmodeError:
                default = None
        return JSONResponse(
            {
                "default_model": DEFAULT_MODEL,
                "default_title": default,
                "models": served,
                "also": ["active-sentiment", "active-topic", "base"],
                "max_client_batch_size": MAX_TEXTS,
                "model_type": "classifier",
            }
        )

    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
    ]
    return routes, batcher.close
