"""Training as a service: jobs queued in the bias store, claimed by workers under leases.

records.py (the dataclasses), config.py (a job's config), datacheck.py (a data file checked
before queueing), queue.py + leases.py (the queue in the store), worker.py (claim, train,
publish), cli.py (``bitfit jobs``). The layout in the store is in docs/TRAINING.md.
"""
