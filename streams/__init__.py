"""The Kafka side: workers, partition batches, the outbox relay, topics, the producer,
validation of inbound messages, Kafka security, metrics and the ``loyalty`` command line.

``devkit/`` is the developer kit (embedded services, simulator, demo); no
production path imports it. ``cli/`` is the command line.
"""
