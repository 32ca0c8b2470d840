"""KafkaSink: events to a Kafka topic with confluent-kafka, at least once.

::

    PixelMiddleware(app, sink="kafka://127.0.0.1:9092/raw-events?acks=all")
    PixelMiddleware(app, sink=KafkaSink("10.0.0.5:9092", topic="raw-events", spool_dir="/var/spool/pixel"))

Each event becomes one message: the key is ``userId``, else ``anonymousId``
(so one user's events go to one partition, in order), the value is the event
as compact UTF-8 JSON, and the headers ``type`` and ``dialect`` say what it is
without parsing the value.

Delivery guarantee: at-least-once. An event counts as delivered when the
broker acknowledged it (``acks=all`` by default) in a delivery report; until
then it is in memory, in librdkafka's queue or in the on-disk spool. Reports
that say the message failed or did not come within ``delivery_timeout``
send the event to the spool, replayed once the broker answers again and at
the next start. ``close()`` and interpreter exit flush within a timeout and
spool the rest. Lost: what is in memory when the process is killed without
a chance to close (SIGKILL, OOM), and what the spool's disk cap refuses
(counted and logged). Duplicates (same ``messageId``):
a message the broker stored but whose acknowledgement did not arrive in time,
a spool file replayed again after part of it was delivered, librdkafka's own
retries unless you set ``enable.idempotence``. Order: per key, as long as
nothing is spooled; a replay comes before anything newer from the same
process, but events that failed in flight are spooled after those that were
queued behind them.

Requires the ``kafka`` extra: ``pip install "pixel-middleware[kafka]"``.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from .delivery import DeliveringSink, Item, split_options

_log = logging.getLogger("pixel_middleware.kafka")
#: librdkafka's own log lines (connection refused, retries...), on a logger of their own.
_librdkafka_log = logging.getLogger("pixel_middleware.kafka.librdkafka")

try:
    import confluent_kafka
except ImportError:  # pragma: no cover - exercised where the extra is missing
    confluent_kafka = None  # type: ignore[assignment]

#: Broker answers that no retry will change: the event goes to the dead-letter file.
_PERMANENT = {"MSG_SIZE_TOO_LARGE", "INVALID_RECORD", "_MSG_SIZE_TOO_LARGE", "CORRUPT_MESSAGE"}


def _require_kafka() -> Any:
    if confluent_kafka is None:
        raise ImportError(
            "KafkaSink needs confluent-kafka: install the kafka extra, pip install 'pixel-middleware[kafka]'"
        )
    return confluent_kafka


class KafkaSink(DeliveringSink):
    """Produce each event to a Kafka topic; spool what the broker does not take.

    :param bootstrap_servers: ``host:port[,host:port...]``.
    :param topic: the topic (default ``raw-events``).
    :param config: librdkafka producer settings, passed through unchanged
        (``acks``, ``linger.ms``, ``compression.type``, ``security.protocol``...);
        they win over the defaults here: ``acks=all``, ``linger.ms=5``, and
        ``message.timeout.ms`` from ``delivery_timeout``.
    :param delivery_timeout: seconds a message may wait for its acknowledgement
        before it is spooled (default 10).
    :param probe_timeout: seconds the metadata request that checks whether a
        broker is back may take, while the sink is down (default 2).

    The options of :class:`~pixel_middleware.sinks.delivery.DeliveringSink`
    (``spool_dir``, ``spool_max_bytes``, ``queue_size``, ``batch_size``,
    ``linger``, ``retry_backoff``, ``retry_backoff_max``, ``rescan``,
    ``exit_timeout``, ``dead_letter``) apply as well.
    """

    kind = "kafka"

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        *,
        topic: str = "raw-events",
        config: Optional[Mapping[str, Any]] = None,
        delivery_timeout: float = 10.0,
        probe_timeout: float = 2.0,
        **options: Any,
    ) -> None:
        kafka = _require_kafka()
        self.topic = topic
        self.delivery_timeout = float(delivery_timeout)
        self.probe_timeout = float(probe_timeout)
        self.config: Dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.delivery_timeout * 1000),
            "logger": _librdkafka_log,
            **(config or {}),
        }
        # Built now so that a wrong setting fails here, with librdkafka's message.
        self._producer = kafka.Producer(self.config)
        self._producer_pid = os.getpid()
        self._headers: Dict[Any, List[Any]] = {}
        super().__init__(f"{bootstrap_servers}/{topic}", **options)

    @property
    def name(self) -> str:
        return f"kafka:{self.config['bootstrap.servers']}/{self.topic}"

    def __repr__(self) -> str:
        return f"<KafkaSink {self.config['bootstrap.servers']}/{self.topic}>"

    @classmethod
    def from_url(cls, url: str) -> "KafkaSink":
        """``kafka://host:port[,host:port]/topic?option=value&librdkafka.setting=value``.

        Sink options (``spool_dir``, ``delivery_timeout``, ``batch_size``...)
        are taken by name; every other parameter is a producer setting.
        """
        parts = urlsplit(url)
        # The URL is not quoted back in these errors: its query may hold sasl.password.
        if not parts.netloc:
            raise ValueError("Kafka sink URL names no broker: kafka://host:port/topic")
        if "@" in parts.netloc:
            # Read as a broker name, user:password@ would be in the sink's name, metrics and logs.
            raise ValueError("Kafka sink URL: credentials go in the query (sasl.username=...&sasl.password=...), "
                             "not before the broker")
        options, config = split_options(
            parse_qsl(parts.query, keep_blank_values=True),
            {"delivery_timeout": float, "probe_timeout": float},
        )
        topic = unquote(parts.path.strip("/")) or "raw-events"
        return cls(parts.netloc, topic=topic, config=config, **options)

    # -- the worker thread -------------------------------------------------

    def _producer_here(self) -> Any:
        if self._producer_pid != os.getpid():
            # librdkafka's threads do not survive a fork: the parent's producer
            # is unusable here, and flushing it would deliver the parent's messages.
            self._producer = confluent_kafka.Producer(self.config)
            self._producer_pid = os.getpid()
        return self._producer

    def _deliver(self, items: Sequence[Item]) -> List[Item]:
        producer = self._producer_here()
        report = _Reports()
        failed: List[Item] = []
        produce = producer.produce
        topic = self.topic
        on_delivery = report.on_delivery
        headers_for = self._headers
        sent: List[Item] = []
        for item, value in self._encoded(items):
            event, dialect, _ = item
            key = event.get("userId") or event.get("anonymousId")
            headers = headers_for.get((event.get("type"), dialect))
            if headers is None:
                headers = headers_for[(event.get("type"), dialect)] = _headers(event.get("type"), dialect)
            try:
                try:
                    produce(topic, value, key, on_delivery=on_delivery, headers=headers)
                except BufferError:
                    producer.poll(0.5)  # librdkafka's queue is full: let it drain once
                    produce(topic, value, key, on_delivery=on_delivery, headers=headers)
            except BufferError:
                failed.append(item)
                continue
            except confluent_kafka.KafkaException as error:
                code = error.args[0] if error.args else None
                if isinstance(code, confluent_kafka.KafkaError) and code.name() in _PERMANENT:
                    self._dead_letter([item], destination=repr(self), error=str(code))
                else:
                    failed.append(item)
                continue
            except (TypeError, ValueError) as error:  # a key or header librdkafka cannot take
                self._dead_letter([item], destination=repr(self), reason="unproducible", error=type(error).__name__)
                continue
            sent.append(item)
            if len(sent) % 256 == 0:
                producer.poll(0)  # serve delivery reports as we go
        producer.flush(self.delivery_timeout + 1.0)
        if report.acked + len(report.errors) < len(sent):
            # Some reports never came (cannot happen while flush outlasts
            # message.timeout.ms): not knowing which, retry all that were sent.
            return failed + sent
        for error, message in report.errors:
            item = _item_from(message)
            if error.name() in _PERMANENT:
                self._dead_letter([item], destination=repr(self), error=str(error))
            else:
                failed.append(item)
        return failed

    def _probe(self) -> bool:
        try:
            self._producer_here().list_topics(self.topic, timeout=self.probe_timeout)
        except confluent_kafka.KafkaException:
            return False
        return True

    def _release(self, timeout: Optional[float]) -> None:
        if self._producer_pid != os.getpid():
            return
        if not self._worker.is_alive:
            # Nothing is in flight once the worker has stopped, and a batch that
            # was is spooled already: drop librdkafka's copy rather than wait.
            producer = self._producer
            producer.purge()
            producer.flush(0)
            producer.close()


class _Reports:
    """Delivery reports of one batch; served inside poll()/flush() on the worker thread."""

    __slots__ = ("acked", "errors")

    def __init__(self) -> None:
        self.acked = 0
        self.errors: List[Any] = []

    def on_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            self.acked += 1
        else:
            self.errors.append((error, message))


def _headers(type_: Any, dialect: Optional[str]) -> List[Any]:
    headers = [("type", str(type_ or "").encode())]
    if dialect:
        headers.append(("dialect", dialect.encode()))
    return headers


def _item_from(message: Any) -> Item:
    """The queued item back from a message that failed: only failures pay for this parse."""
    headers = dict(message.headers() or ())
    dialect = headers.get("dialect")
    return json.loads(message.value()), dialect.decode() if dialect else None, None
