"""Google API access, the one way this package calls Google: the clients (``client``), one
retry and timeout policy and what a failure means (``api``), tasks (``tasks``), queues read
and steered (``queue_admin``), queues set up (``provisioning``), and the Cloud Scheduler job
(``scheduler_job``)."""
