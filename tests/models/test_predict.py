"""``POST /predict`` and ``GET /info``: the classifiers over HTTP, on a real server on
127.0.0.1, asked as text-embeddings-inference is."""

import http.client
import json
import threading

import pytest

from devmode.models.predict import MAX_TEXTS, classifier_routes
from devmode.serving import Server, bearer_check, build_app


@pytest.fixture
def served(news_db):
    routes, stop = classifier_routes(news_db, bearer_check("k-1"))
    server = Server(("127.0.0.1", 0), build_app(routes, routes_help="Use POST /predict."), [stop])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def ask(server, method, path, body=None, key="k-1", raw=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers=headers)
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read()), {k.lower(): v for k, v in answer.getheaders()}


def test_one_text_gets_every_class_highest_first_and_a_list_gets_a_list(served):
    status, one, headers = ask(served, "POST", "/predict", {"inputs": "up good"})
    assert status == 200 and headers["x-truncated"] == "0"
    assert {item["label"] for item in one} == {"negative", "neutral", "positive"}
    scores = [item["score"] for item in one]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-4)

    status, many, _ = ask(served, "POST", "/predict", {"inputs": ["up good", "down awful"]})
    assert status == 200 and len(many) == 2 and many[0] == one

    status, raw, _ = ask(served, "POST", "/predict", {"inputs": "up good", "raw_scores": True})
    assert status == 200 and [i["label"] for i in raw] == [i["label"] for i in one]
    assert sum(i["score"] for i in raw) != pytest.approx(1, abs=1e-3)  # logits, not a softmax


def test_the_model_is_named_in_the_address(served):
    _, by_run, _ = ask(served, "POST", "/predict?model=1", {"inputs": "up good"})
    _, active, _ = ask(served, "POST", "/predict", {"inputs": "up good"})
    assert by_run == active
    status, base, _ = ask(served, "POST", "/predict?model=base", {"inputs": "up good"})
    assert status == 200 and len(base) == 3
    status, info, _ = ask(served, "GET", "/info")
    assert status == 200 and info["max_client_batch_size"] == MAX_TEXTS
    assert [m["model"] for m in info["models"]] == ["1"]
    assert info["models"][0]["active_as"] == "sentiment"


def test_long_texts_are_cut_and_counted(served):
    status, answers, headers = ask(
        served, "POST", "/predict", {"inputs": ["up " * 5000, "down", "flat " * 100]}
    )
    assert status == 200 and len(answers) == 3 and headers["x-truncated"] == "2"


@pytest.mark.parametrize(
    "path, body, status, phrase, param",
    [
        ("/predict", {"inputs": []}, 422, "'inputs' is an empty list", "inputs"),
        ("/predict", {"inputs": [1, "a"]}, 422, "'inputs' must be a text or a list", "inputs[0]"),
        ("/predict", {"inputs": {"a": 1}}, 422, "'inputs' must be a text or a list", "inputs"),
        ("/predict", {"text": "a"}, 422, "inputs is required", "inputs"),
        ("/predict", {"inputs": ["a"] * (MAX_TEXTS + 1)}, 422, "at most 256 a request", "inputs"),
        ("/predict", {"inputs": ["a", "  "]}, 422, "inputs[1] is empty", "inputs[1]"),
        ("/predict", {"inputs": "a", "raw_scores": "yes"}, 422, "raw_scores", "raw_scores"),
        ("/predict?model=99", {"inputs": "a"}, 404, "No run with id 99", "model"),
        ("/predict?model=run-1", {"inputs": "a"}, 422, "does not name a model", "model"),
        ("/predict?model=active-topic", {"inputs": "a"}, 422, "No model is active for topic", "model"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_that_names_the_field(served, path, body, status, phrase, param):
    got, answer, _ = ask(served, "POST", path, body)
    assert got == status, answer
    assert phrase in answer["error"]["message"] and answer["error"]["param"] == param
    assert ask(served, "POST", "/predict", {"inputs": "up"})[0] == 200  # and it goes on


def test_a_request_without_the_key_is_refused(served):
    status, answer, _ = ask(served, "POST", "/predict", {"inputs": "up"}, key=None)
    assert status == 401 and answer["error"]["type"] == "invalid_api_key"
    assert ask(served, "GET", "/info", key="wrong")[0] == 401


def test_requests_at_once_are_scored_together_and_each_gets_its_own(served):
    texts = [f"{w} good" for w in ("up", "down", "flat")] * 10
    results = {}

    def one(i):
        results[i] = ask(served, "POST", "/predict", {"inputs": [texts[i]]})[1][0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, alone, _ = ask(served, "POST", "/predict", {"inputs": texts})
    for i in range(len(texts)):
        assert [x["label"] for x in results[i]] == [x["label"] for x in alone[i]]
        assert results[i][0]["score"] == pytest.approx(alone[i][0]["score"], abs=1e-4)
