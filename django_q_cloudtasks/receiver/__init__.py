"""The receive side: who may call (``auth``), what becomes of a delivery (``delivery``),
running a task once (``execution``, ``leases``), rejected deliveries (``deadletters``), and
the status rows ``qinfo`` and ``qmonitor`` read (``status``)."""
