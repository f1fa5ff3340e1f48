"""The only code that talks to the Kubernetes API server (kopf's own watching aside).

Children are applied with server-side apply under the field manager `llmserve`: one request creates
or updates, the API server merges only the fields we own, and fields others add (an extra label, an
HPA's replicas on someone else's Deployment) are left alone. Errors become the domain errors of
`llmserve.kube.errors`, which carry kopf's retry semantics.
"""
