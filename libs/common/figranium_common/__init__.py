"""Code shared by every Figranium service: settings, logging, models and the NATS topology.

The PostgreSQL helpers live in :mod:`figranium_common.db` and need the ``db`` extra.
"""
