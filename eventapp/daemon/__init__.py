"""The job manager: ``eventapp run JOB --parallelism N`` (Flink's JobManager for one job on one
machine).

* :mod:`~eventapp.daemon.jobmanager` runs N worker processes (task slots), each running its share
  of the splits with ``eventapp run --subtask I``, restarts a crashed one under a
  :mod:`~eventapp.daemon.restart` strategy, and coordinates savepoints and stops;
* :mod:`~eventapp.daemon.worker_link` is the worker's side of the channel to it (reports in, commands
  out); :mod:`~eventapp.daemon.messages` the messages on it;
* :mod:`~eventapp.daemon.job_state` is what the job manager knows (job status, slots, splits,
  checkpoint and exception history), rendered by :mod:`~eventapp.daemon.rest` (the Flink-shaped
  REST API, dashboard and health endpoints) and :mod:`~eventapp.daemon.metrics` (Prometheus);
* :mod:`~eventapp.daemon.client` is the CLI's client of that API.
"""
