"""The dead-link settings the tool adds to its connections unless the URL sets them.

tests/test_partition.py shows what they are for, with short values in the URLs;
here, that the documented defaults reach the connections made, and that a URL
or the environment overrides each one.
"""

from __future__ import annotations

import pytest
from psycopg.conninfo import make_conninfo

from bulk import db
from bulk.queue import broker
from tests import rabbit
from tests.conftest import SERVER_URL

LIBPQ = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}


def _parameters(url: str) -> dict:
    with db.open_connection(url, autocommit=True) as conn:
        return conn.info.get_parameters()


def test_every_database_connection_gets_keepalives_and_timeouts(monkeypatch):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    given = _parameters(SERVER_URL)
    assert {k: given.get(k) for k in LIBPQ} == LIBPQ
    with db.connect(SERVER_URL, autocommit=True) as conn:
        given = conn.info.get_parameters()
    assert {k: given.get(k) for k in LIBPQ} == LIBPQ


def test_the_url_and_the_environment_override_them(monkeypatch):
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "7")
    url = make_conninfo(SERVER_URL, keepalives_idle="5", tcp_user_timeout="2500")
    given = _parameters(url)
    assert given["keepalives_idle"] == "5"
    assert given["tcp_user_timeout"] == "2500"
    assert given["connect_timeout"] == "7"
    assert given["keepalives_interval"] == "10"  # the rest keep the defaults
    assert db.libpq_defaults("postgresql://u@h/db?keepalives=0") == {
        k: v for k, v in LIBPQ.items() if k not in ("keepalives", "connect_timeout")
    }


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", (30, 10.0, 15.0, 60.0)),
        (
            "?heartbeat=5&socket_timeout=2&stack_timeout=4&blocked_connection_timeout=9",
            (5, 2, 4, 9),
        ),
    ],
)
def test_broker_connections_get_a_heartbeat_and_timeouts(query, expected):
    url = rabbit.RABBITMQ_URL.split("?")[0] + query
    connection = broker.connect(url)
    try:
        params = connection._impl.params  # what pika negotiated and uses
        got = (
            params.heartbeat,
            params.socket_timeout,
            params.stack_timeout,
            params.blocked_connection_timeout,
        )
    finally:
        connection.close()
    assert got == expected
