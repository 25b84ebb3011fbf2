"""Storage backends behind one interface (``bias_store.store.BiasStore``).

``base.py`` holds what every backend shares (the bounded metadata cache, reads, listing,
records); ``folder/`` is a store in one folder, ``s3/`` one under an S3 prefix.
``bias_store.open_store`` picks one by URL.
"""
