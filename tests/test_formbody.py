"""SNS bodies are form-encoded once, exactly as botocore would have encoded them."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest, AWSRequestPreparer
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.bus import formbody
from sesshu.bus.api import Publish
from sesshu.bus.sqs import SqsSnsBus
from sesshu.ops.provision import Deployment
from tests.harness.aws import FAKE_CREDENTIALS, REGION, BusServer, Inbox

# Text SNS could carry: any code point but the lone surrogates UTF-8 cannot encode.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


def botocore_encoding(fields: dict[str, Any]) -> bytes:
    body = AWSRequestPreparer()._prepare_body(AWSRequest(method="POST", url="http://x/", data=fields))
    return body.encode("ascii") if isinstance(body, str) else body


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_quote_plus_is_the_standard_librarys(data: bytes) -> None:
    assert formbody.quote_plus(data) == urllib.parse.quote_plus(data).encode("ascii")


def test_every_byte_value_is_quoted_as_the_standard_library_quotes_it() -> None:
    every = bytes(range(256)) * 3 + b"%%25 +"
    assert formbody.quote_plus(every) == urllib.parse.quote_plus(every).encode("ascii")


@given(st.dictionaries(TEXT, TEXT, max_size=12))
@settings(max_examples=300, deadline=None)
def test_fields_encode_as_botocore_encodes_them(fields: dict[str, str]) -> None:
    assert formbody.encode(fields) == botocore_encoding(fields)


def test_fields_that_are_not_all_text_are_left_to_botocore() -> None:
    assert formbody.encode({"Action": "Publish", "Count": 3}) is None
    params: dict[str, Any] = {"body": {"Action": "Publish", "Count": 3}}
    formbody._encode_body(params)
    assert params["body"] == {"Action": "Publish", "Count": 3}


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("credentials")
def test_the_daemons_sns_client_sends_the_encoded_body(moto: BusServer, deployment: Deployment) -> None:
    bus = SqsSnsBus(deployment.queue_url, deployment.results_topic, region=REGION, endpoint_url=moto.url)
    sent_bodies: list[Any] = []
    bus._sns.meta.events.register("before-send.sns", lambda request, **_: sent_bodies.append(request.body))
    # Every kind of byte a result can hold: quotes, brackets, "%", "+", spaces, non-ASCII, controls.
    documents = [json.dumps({"target": f"t{i}", "plugin": "p", "result": text}, ensure_ascii=False)
                 for i, text in enumerate(["a b+c%20d&e=f", "日本語 ü \u2028 \x01", "x" * 70_000, "{[\"]}\\"])]
    failed = bus.publish([Publish(f"e{i}", doc, {"plugin": "p"}) for i, doc in enumerate(documents)])
    assert failed == {}
    # botocore's own encoding would have reached the wire as text; the hook's is bytes, made once.
    assert sent_bodies and all(isinstance(body, bytes) for body in sent_bodies)
    inbox = Inbox(moto, deployment.results_queue_url)
    inbox.wait(len(documents))
    assert sorted(json.dumps(doc, ensure_ascii=False) for doc in inbox.docs) == sorted(documents)
