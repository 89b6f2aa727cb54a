"""Kafka security settings -> kafka-python, aiokafka and faust options; secrets never shown."""

from __future__ import annotations

import inspect
import logging
import ssl
import subprocess

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from streams.kafka_security import (KafkaSecurityError, aiokafka_options, faust_broker_options,
                                    kafka_python_options, security_protocol)
from streams.settings import Settings

SECRET = "s3cret-Passw0rd"
CERT_VALIDITY_DAYS = 1
OPENSSL_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM), made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", str(CERT_VALIDITY_DAYS), "-subj", "/CN=loyalty-test",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)
    return str(cert), str(key)


def sasl(protocol: str = "SASL_PLAINTEXT", mechanism: str = "SCRAM-SHA-512", **more) -> Settings:
    return Settings(security_protocol=protocol, sasl_mechanism=mechanism,
                    sasl_username="loyalty", sasl_password=SECRET, **more)


# ------------------------------------------------------------------ settings


def test_security_settings_come_from_the_environment():
    settings = Settings.from_env({"LOYALTY_SECURITY_PROTOCOL": "SASL_SSL",
                                  "LOYALTY_SASL_MECHANISM": "SCRAM-SHA-256",
                                  "LOYALTY_SASL_USERNAME": "loyalty", "LOYALTY_SASL_PASSWORD": SECRET,
                                  "LOYALTY_SSL_CAFILE": "/etc/kafka/ca.pem",
                                  "LOYALTY_METRICS_PORT": "9100"})
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_password == SECRET
    assert settings.ssl_cafile == "/etc/kafka/ca.pem"
    assert settings.metrics_port == 9100  # an int, not the string


def test_new_settings_default_to_off():
    settings = Settings.from_env({})
    assert settings.security_protocol is None and settings.metrics_port is None
    assert kafka_python_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker_options(settings) == {}


def test_secrets_are_hidden_from_redacted_repr_and_logs(caplog):
    settings = sasl(database_url="postgresql://loyalty:dbpass@db:5432/loyalty")
    assert settings.redacted()["sasl_password"] == "***"
    assert "dbpass" not in str(settings.redacted())
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("starting with %s", settings)
    for shown in (repr(settings), str(settings), caplog.text):
        assert SECRET not in shown and "dbpass" not in shown
    # to_env keeps the secret: it is how child processes get their configuration
    assert settings.to_env()["LOYALTY_SASL_PASSWORD"] == SECRET


# ------------------------------------------------------------- kafka-python


def test_sasl_scram_options_for_kafka_python():
    options = kafka_python_options(sasl())
    assert options == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "loyalty", "sasl_plain_password": SECRET}


def test_mutual_tls_options_for_kafka_python():
    settings = Settings(security_protocol="SSL", ssl_cafile="/ca.pem",
                        ssl_certfile="/client.pem", ssl_keyfile="/client.key")
    assert kafka_python_options(settings) == {
        "security_protocol": "SSL", "ssl_check_hostname": True, "ssl_cafile": "/ca.pem",
        "ssl_certfile": "/client.pem", "ssl_keyfile": "/client.key"}


@pytest.mark.parametrize("client", [KafkaProducer, KafkaConsumer, KafkaAdminClient])
def test_every_option_is_a_kafka_python_setting(client):
    settings = sasl("SASL_SSL", ssl_cafile="/ca.pem", ssl_certfile="/c.pem", ssl_keyfile="/c.key")
    assert set(kafka_python_options(settings)) <= set(client.DEFAULT_CONFIG)


# ----------------------------------------------------------------- aiokafka


def test_aiokafka_options_for_the_outbox_producer(certificate):
    cert, key = certificate
    assert aiokafka_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    options = aiokafka_options(sasl("SASL_SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key))
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["sasl_plain_password"] == SECRET
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "ssl_context" not in aiokafka_options(sasl())  # SASL_PLAINTEXT: no TLS


def test_every_option_is_an_aiokafka_producer_argument():
    accepted = inspect.signature(AIOKafkaProducer).parameters
    assert set(aiokafka_options(sasl("SASL_SSL"))) <= set(accepted)


# -------------------------------------------------------------------- faust


def test_faust_sasl_ssl_credentials(certificate):
    cert, key = certificate
    options = faust_broker_options(sasl("SASL_SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key))
    credentials = options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert SECRET not in repr(credentials)
    # What faust hands to aiokafka
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "loyalty" and auth["sasl_plain_password"] == SECRET
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert auth["ssl_context"].check_hostname


def test_faust_sasl_plaintext_has_no_tls_context():
    auth = credentials_to_aiokafka_auth(faust_broker_options(sasl(mechanism="PLAIN"))["broker_credentials"])
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "PLAIN"
    assert auth["ssl_context"] is None


def test_faust_ssl_credentials_and_app_accepts_them(certificate):
    cert, key = certificate
    options = faust_broker_options(Settings(security_protocol="SSL", ssl_cafile=cert,
                                            ssl_certfile=cert, ssl_keyfile=key))
    assert isinstance(options["broker_credentials"], faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(options["broker_credentials"])["security_protocol"] == "SSL"
    app = faust.App("loyalty-security-test", broker="kafka://localhost:9092", **options)
    assert app.conf.broker_credentials is options["broker_credentials"]


def test_protocol_and_mechanism_are_case_insensitive():
    settings = Settings(security_protocol="sasl_plaintext", sasl_mechanism="scram-sha-256",
                        sasl_username="u", sasl_password="p")
    assert security_protocol(settings) == "SASL_PLAINTEXT"
    assert kafka_python_options(settings)["sasl_mechanism"] == "SCRAM-SHA-256"


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize("settings, named", [
    (Settings(security_protocol="TLS"), "LOYALTY_SECURITY_PROTOCOL"),
    (sasl(mechanism="GSSAPI"), "LOYALTY_SASL_MECHANISM"),
    (Settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u"),
     "LOYALTY_SASL_PASSWORD"),
    (Settings(sasl_username="u", sasl_password=SECRET), "LOYALTY_SASL_USERNAME"),
    (Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
              sasl_password=SECRET, ssl_cafile="/ca.pem"), "LOYALTY_SSL_CAFILE"),
    (Settings(security_protocol="SSL", ssl_certfile="/c.pem"), "LOYALTY_SSL_KEYFILE"),
])
def test_settings_that_do_not_fit_are_refused_naming_the_variable(settings, named):
    with pytest.raises(KafkaSecurityError) as refused:
        kafka_python_options(settings)
    assert named in str(refused.value)
    assert SECRET not in str(refused.value)
    with pytest.raises(KafkaSecurityError):
        faust_broker_options(settings)
