"""The chaos harness: exactly-once under faults, for every flow (``ml-connector chaos``)."""
