"""The queue message codec: what is a valid batch, and the reason when it is not."""

import json

import pytest

from bulk.queue import messages


def test_a_v1_batch_round_trips():
    body = messages.encode_batch([5, 3, 9], "zero", "test@host", attempts=2)
    data = json.loads(body)
    assert data["v"] == 1 and data["source"] == "test@host" and data["queued_at"].endswith("Z")
    decoded = messages.decode(body)
    assert decoded == messages.Batch(
        ids=(5, 3, 9), mode="zero", attempts=2, queued_at=data["queued_at"], source="test@host"
    )
    assert data["rules"] == "seed"  # it travels in every message, the default too


@pytest.mark.parametrize("rules", ["seed", "evekill", "zkillboard"])
def test_the_rule_set_travels_beside_the_mode(rules):
    body = messages.encode_batch([7, 8], "all", "t", rules=rules)
    data = json.loads(body)
    assert (data["mode"], data["rules"]) == ("all", rules)
    decoded = messages.decode(body)
    assert (decoded.ids, decoded.mode, decoded.rules) == ((7, 8), "all", rules)


def test_messages_from_before_rule_sets_mean_seed():
    old = b'{"v": 1, "ids": [4, 5], "mode": "null", "queued_at": "2024-05-01T12:00:00Z"}'
    assert messages.decode(old).rules == "seed"
    # A single that names no rule set takes work's --rules (seed by default).
    assert messages.decode(b'{"killmailId": 9}').rules is None
    assert messages.decode(b'{"killmailId": 9, "rules": "evekill"}').rules == "evekill"


def test_an_unknown_rule_set_is_not_encoded():
    with pytest.raises(ValueError, match="unknown rules"):
        messages.encode_batch([1], "all", "t", rules="zkb")


def test_old_single_messages_default_to_null_mode():
    old = {"killmailId": 123, "queuedAt": "2024-05-01T12:00:00Z", "source": "killboard"}
    assert messages.decode(json.dumps(old).encode()) == messages.Single(123, "null")
    with_mode = json.dumps({"killmailId": 7, "mode": "all"}).encode()
    assert messages.decode(with_mode) == messages.Single(7, "all")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{nope", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "wrong shape"),
        (b"null", "wrong shape"),
        (b'{"v": 2, "ids": [1], "mode": "null"}', "wrong shape"),
        (b'{"v": 1, "ids": [], "mode": "null"}', "non-empty list"),
        (b'{"v": 1, "ids": {"a": 1}, "mode": "null"}', "non-empty list"),
        (b'{"v": 1, "ids": [1, 2.5], "mode": "null"}', "not an integer"),
        (b'{"v": 1, "ids": [1, "2"], "mode": "null"}', "not an integer"),
        (b'{"v": 1, "ids": [true], "mode": "null"}', "not an integer"),
        (b'{"v": 1, "ids": [-4], "mode": "null"}', "negative"),
        (b'{"v": 1, "ids": [4294967296], "mode": "null"}', "beyond the largest"),
        (b'{"v": 1, "ids": [1], "mode": "fast"}', "unknown mode"),
        (b'{"v": 1, "ids": [1], "mode": ["null"]}', "unknown mode"),
        (b'{"v": 1, "ids": [1]}', "needs a mode"),
        (b'{"v": 1, "ids": [1], "mode": "null", "attempts": -1}', "attempts"),
        (b'{"killmailId": "12"}', "not an integer"),
        (b'{"killmailId": -3}', "negative"),
        (b'{"killmailId": 3, "mode": "everything"}', "unknown mode"),
        (b'{"v": 1, "ids": [1], "mode": "null", "rules": "zkb"}', "unknown rules 'zkb'"),
        (b'{"v": 1, "ids": [1], "mode": "null", "rules": null}', "unknown rules None"),
        (b'{"v": 1, "ids": [1], "mode": "null", "rules": ["seed"]}', "unknown rules"),
        (b'{"v": 1, "ids": [1], "mode": "null", "rules": "SEED"}', "unknown rules"),
        (b'{"killmailId": 3, "rules": 1}', "unknown rules 1"),
    ],
)
def test_invalid_messages_say_why(body, reason):
    with pytest.raises(messages.InvalidMessage, match=reason):
        messages.decode(body)


def test_at_most_ten_thousand_ids():
    ids = list(range(1, messages.MAX_IDS + 1))
    assert len(messages.decode(messages.encode_batch(ids, "all", "t")).ids) == messages.MAX_IDS
    with pytest.raises(messages.InvalidMessage, match="too many IDs: 10,001"):
        messages.decode(messages.encode_batch([*ids, 10_001], "all", "t"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # 10 KB that made json.loads raise RecursionError and killed the worker
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"v": 1, "ids": [' + b"9" * 5000 + b'], "mode": "null"}', "not JSON this tool reads"),
        (b'{"killmailId": ' + b"7" * 5000 + b"}", "not JSON this tool reads"),
        (b'{"v": true, "ids": [1], "mode": "null"}', "wrong shape"),
        (b'{"v": 1.0, "ids": [1], "mode": "null"}', "wrong shape"),
        (b'{"v": 1, "ids": [1e999], "mode": "null"}', "not an integer"),
        (b'{"v": 1, "ids": [1.0], "mode": "null"}', "not an integer"),
        (b'{"killmailId": 5.0}', "not an integer"),
        (b'{"killmailId": false}', "not an integer"),
        (b'{"v": 1, "ids": [1], "mode": "null", "attempts": ' + b"9" * 300 + b"}", "attempts"),
        (b'{"v": 1, "ids": [1], "mode": "null", "attempts": true}', "attempts"),
    ],
)
def test_hostile_bodies_are_invalid_never_a_crash(body, reason):
    with pytest.raises(messages.InvalidMessage, match=reason) as caught:
        messages.decode(body)
    assert len(str(caught.value)) < 400  # a reason, not the body echoed back
