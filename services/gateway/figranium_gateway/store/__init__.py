"""The gateway's SQL, raw and parameterised: one module per table, which alone queries it.

A statement that joins tables lives with the table it is about; a transaction that spans
tables (storing a run's result) is composed from the owners' functions on one connection
(``recording``). The migrations, and the queuing SQL shared with the scheduler, are in
``figranium_common``.
"""
