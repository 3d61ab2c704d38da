"""The job runner: a durable queue in SQL, worker processes that keep priors warm, crash recovery.

Entry points: ``JobService`` (submit/read/cancel/download, shared by API, UI and CLI),
``LocalProcessEngine`` (workers), ``Supervisor`` (recovery and retention).
"""
