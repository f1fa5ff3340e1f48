"""The autoscaler's pure parts: the policy that turns load into replicas, and the metrics sources.

`policy` decides; `sources` reads load from pods (directly or through Prometheus). Writing the
decision through the scale subresource belongs to `llmserve.reconcile`, the one writer.
"""
