"""The rehearsal cluster: Ray's fake multi-node autoscaler on one machine, with the cloud's node
types (``config``), started and stopped by ``python -m infra.rehearsal up|down`` (``cluster``)."""
