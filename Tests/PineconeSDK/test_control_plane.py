"""The control plane through Pinecone's SDK: the seed flow, describe, list,
configure, delete, and the errors each SDK raises."""

import json
import urllib.request

import numpy as np
import pinecone
import pytest
from pinecone import ServerlessSpec
from pinecone.exceptions import ForbiddenException, NotFoundException, PineconeApiException

from conftest import exact_top_k

SDK_MAJOR = int(pinecone.__version__.split(".")[0])


def raw(server, method, path, body=None, headers=None):
    """One HTTP request without the SDK: (status, parsed JSON body)."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_seed_flow(pc, index_name):
    """The getting-started script, unchanged: create, wait for ready, upsert
    tuples, query with values; the values come back as upserted."""
    assert index_name not in pc.list_indexes().names()
    pc.create_index(name=index_name, dimension=8, metric="cosine",
                    spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    assert pc.describe_index(index_name).status["ready"]
    assert index_name in pc.list_indexes().names()
    assert pc.has_index(index_name)
    index = pc.Index(index_name)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(4, 8)).astype(np.float32) * np.float32(3.0)
    ids = ["vec1", "vec2", "vec3", "vec4"]
    assert index.upsert(vectors=[(i, v.tolist()) for i, v in zip(ids, vectors)]).upserted_count == 4
    results = index.query(vector=vectors[2].tolist(), top_k=2, include_values=True)
    assert len(results.matches) == 2
    assert results.matches[0].id == "vec3"
    assert results.matches[0].score == pytest.approx(1.0, abs=1e-5)
    # Cosine: the stored vector is normalised, but the values come back as given.
    np.testing.assert_allclose(results.matches[0].values, vectors[2], rtol=1e-5)
    order, scores = exact_top_k(vectors, vectors[2:3], 2)
    assert [m.id for m in results.matches] == [ids[i] for i in order[0]]
    np.testing.assert_allclose([m.score for m in results.matches], scores[0], atol=1e-5)


def test_describe_shape_and_both_create_families(pc, server, index_name):
    """The description carries both API families' fields; the server takes
    both create bodies (the SDK in use sends one; the other goes raw)."""
    model = pc.create_index(name=index_name, dimension=16, metric="dotproduct",
                            spec=ServerlessSpec(cloud="gcp", region="europe-west4"), tags={"team": "search"})
    assert model.dimension == 16 and model.metric == "dotproduct"
    assert model.host.startswith("http://") and model.host.endswith("/_data/" + index_name)
    d = pc.describe_index(index_name)
    assert d.deletion_protection == "disabled"
    assert d.tags == {"team": "search"}
    status, body = raw(server, "GET", "/indexes/" + index_name)
    assert status == 200
    assert body["spec"] == {"serverless": {"cloud": "gcp", "region": "europe-west4"}}
    assert body["deployment"] == {"deployment_type": "managed", "cloud": "gcp", "region": "europe-west4"}
    assert body["schema"]["fields"]["_values"] == {"type": "dense_vector", "dimension": 16, "metric": "dotproduct"}
    assert not any(v is None for v in body.values())
    other = index_name + "-b"
    try:
        if SDK_MAJOR >= 10:  # the SDK sent schema+deployment: send the legacy body raw
            body = {"name": other, "dimension": 4, "metric": "euclidean", "spec": {"pod": {"environment": "local",
                                                                                         "pod_type": "p1.x1"}}}
        else:
            body = {"name": other, "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": 4,
                                                                      "metric": "euclidean"}}},
                    "deployment": {"deployment_type": "pod", "environment": "local", "pod_type": "p1.x1"}}
        status, created = raw(server, "POST", "/indexes", body)
        assert status == 201, created
        d = pc.describe_index(other)
        assert d.dimension == 4 and d.metric == "euclidean"
        assert created["spec"]["pod"]["pod_type"] == "p1.x1"
    finally:
        pc.delete_index(other)


def test_configure_and_deletion_protection(pc, server, index_name):
    pc.create_index(name=index_name, dimension=4, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"),
                    deletion_protection="enabled", tags={"a": "1", "b": "2"})
    with pytest.raises(ForbiddenException):
        pc.delete_index(index_name)
    assert pc.has_index(index_name)
    pc.configure_index(index_name, tags={"b": "", "c": "3"})  # "" removes a tag
    assert pc.describe_index(index_name).tags == {"a": "1", "c": "3"}
    # Deployment fields are checked before they are kept (every later description echoes them).
    for body in [{"deployment": {"replicas": "3"}}, {"deployment": {"pod_type": 7}}, {"spec": {"pod": {"bogus": 1}}}]:
        status, answer = raw(server, "PATCH", "/indexes/" + index_name, body)
        assert status == 400, (body, answer)
    assert raw(server, "PATCH", "/indexes/" + index_name, {"deployment": {"replicas": 2, "pod_type": None}})[0] == 202
    assert pc.describe_index(index_name).status["ready"]  # still decodes
    pc.configure_index(index_name, deletion_protection="disabled")
    pc.delete_index(index_name)  # synchronous: gone at once
    assert not pc.has_index(index_name)
    with pytest.raises(NotFoundException):
        pc.describe_index(index_name)


def test_control_plane_errors(pc, server, index_name):
    pc.create_index(name=index_name, dimension=4, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    with pytest.raises(PineconeApiException) as e:  # ConflictError in 10.x
        pc.create_index(name=index_name, dimension=4, metric="cosine",
                        spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    assert getattr(e.value, "status", None) == 409 or getattr(e.value, "status_code", None) == 409
    with pytest.raises(NotFoundException):
        pc.describe_index("no-such-index")
    with pytest.raises(NotFoundException):
        pc.delete_index("no-such-index")
    # What the SDKs check client-side, sent raw: 400 with Lodestone's message, never 5xx.
    for body, words in [({"name": "Bad_Name", "dimension": 4, "metric": "cosine"}, "invalid"),
                        ({"name": "ok-name", "dimension": 4, "metric": "hamming"}, "metric"),
                        ({"name": "ok-name", "dimension": 0, "metric": "cosine"}, "dimension"),
                        ({"name": "ok-name", "metric": "cosine"}, "dimension"),
                        ({"name": "ok-name", "dimension": 4, "vector_type": "sparse"}, "sparse"),
                        ({"dimension": 4}, "name")]:
        status, answer = raw(server, "POST", "/indexes", body)
        assert status == 400, (body, answer)
        assert words in answer["error"]["message"], answer
        assert answer["error"]["code"] == "INVALID_ARGUMENT"
    assert not pc.has_index("ok-name")
    for method, path, status in [("POST", "/indexes/create-for-model", 501), ("GET", "/collections", 501),
                                 ("GET", "/nowhere", 404), ("PUT", "/indexes", 404)]:
        assert raw(server, method, path, {})[0] == status, path
    assert raw(server, "POST", "/indexes", b'{"name": "x", "dimension": ')[0] == 400
    assert raw(server, "POST", "/indexes", b'[1, 2]')[0] == 400
