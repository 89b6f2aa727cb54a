"""Kafka security settings -> client options (kafka-python and faust).

``Settings`` holds ``security_protocol``, ``sasl_mechanism``,
``sasl_username``, ``sasl_password``, ``ssl_cafile``, ``ssl_certfile`` and
``ssl_keyfile`` (env ``LOYALTY_SECURITY_PROTOCOL`` and so on). This module
checks that they fit together and turns them into:

- ``kafka_python_options(settings)``: keyword arguments for kafka-python's
  ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``;
- ``faust_broker_options(settings)``: keyword arguments for ``faust.App``
  (``broker_credentials``: a ``faust.SASLCredentials`` or
  ``faust.SSLCredentials`` over an ``ssl.SSLContext`` built here).

A setting that would be silently ignored (SASL fields without a SASL
protocol, certificate files without TLS) is an error, not a surprise in
production. Errors name the environment variable, never a secret's value.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import ENV_PREFIX, Settings

PLAINTEXT = "PLAINTEXT"
SSL = "SSL"
SASL_PLAINTEXT = "SASL_PLAINTEXT"
SASL_SSL = "SASL_SSL"
SECURITY_PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
TLS_PROTOCOLS = (SSL, SASL_SSL)
SASL_PROTOCOLS = (SASL_PLAINTEXT, SASL_SSL)
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")
SSL_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


class KafkaSecurityError(ValueError):
    """The Kafka security settings do not fit together."""


def _variable(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def security_protocol(settings: Settings) -> str:
    """The checked protocol: ``PLAINTEXT`` when unset."""
    protocol = (settings.security_protocol or PLAINTEXT).upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaSecurityError(f"{_variable('security_protocol')} must be one of "
                                 f"{', '.join(SECURITY_PROTOCOLS)}, not {protocol!r}")
    _check_sasl(settings, protocol)
    _check_ssl(settings, protocol)
    return protocol


def _check_sasl(settings: Settings, protocol: str) -> None:
    given = [name for name in SASL_FIELDS if getattr(settings, name) is not None]
    if protocol not in SASL_PROTOCOLS:
        if given:
            raise KafkaSecurityError(f"{', '.join(map(_variable, given))} need "
                                     f"{_variable('security_protocol')} SASL_PLAINTEXT or SASL_SSL")
        return
    missing = [name for name in SASL_FIELDS if getattr(settings, name) is None]
    if missing:
        raise KafkaSecurityError(f"{protocol} needs {', '.join(map(_variable, missing))}")
    if settings.sasl_mechanism.upper() not in SASL_MECHANISMS:
        raise KafkaSecurityError(f"{_variable('sasl_mechanism')} must be one of "
                                 f"{', '.join(SASL_MECHANISMS)}, not {settings.sasl_mechanism!r}")


def _check_ssl(settings: Settings, protocol: str) -> None:
    given = [name for name in SSL_FIELDS if getattr(settings, name) is not None]
    if protocol not in TLS_PROTOCOLS and given:
        raise KafkaSecurityError(f"{', '.join(map(_variable, given))} need "
                                 f"{_variable('security_protocol')} SSL or SASL_SSL")
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        raise KafkaSecurityError(f"{_variable('ssl_certfile')} and {_variable('ssl_keyfile')} "
                                 "go together (mutual TLS)")


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients (producer, consumer, admin)."""
    protocol = security_protocol(settings)
    options = _protocol_and_sasl(settings, protocol)
    if protocol in TLS_PROTOCOLS:
        options["ssl_check_hostname"] = True
        options.update({name: getattr(settings, name) for name in SSL_FIELDS
                        if getattr(settings, name) is not None})
    return options


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (the outbox relay's producer)."""
    protocol = security_protocol(settings)
    options = _protocol_and_sasl(settings, protocol)
    if protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(settings)
    return options


def _protocol_and_sasl(settings: Settings, protocol: str) -> dict[str, Any]:
    """The options kafka-python and aiokafka name alike."""
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in SASL_PROTOCOLS:
        options.update(sasl_mechanism=settings.sasl_mechanism.upper(),
                       sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password)
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: verifies the brokers (system CAs or ``ssl_cafile``),
    presents ``ssl_certfile``/``ssl_keyfile`` when set."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile)
    if settings.ssl_certfile is not None:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``{}`` for PLAINTEXT, else ``broker_credentials``.

    faust's ``SSLCredentials(cafile=...)`` cannot build its own context without an
    explicit ``purpose`` (faust-streaming 0.15.3), so the context is built here.
    """
    import faust

    protocol = security_protocol(settings)
    if protocol == PLAINTEXT:
        return {}
    context = ssl_context(settings) if protocol in TLS_PROTOCOLS else None
    if protocol == SSL:
        return {"broker_credentials": faust.SSLCredentials(context)}
    return {"broker_credentials": faust.SASLCredentials(
        username=settings.sasl_username, password=settings.sasl_password,
        ssl_context=context, mechanism=settings.sasl_mechanism.upper())}


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """``kafka_python_options`` plus the connect timeout (``kafka_connect_timeout_ms``), so a
    command pointed at an unreachable Kafka fails within it instead of kafka-python's 30 s."""
    return kafka_python_options(settings) | {"bootstrap_timeout_ms": settings.kafka_connect_timeout_ms}
