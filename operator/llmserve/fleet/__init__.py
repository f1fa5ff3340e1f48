"""A trace-driven simulator of a fleet of LLM replicas, to compare autoscaling policies.

`llmserve bench autoscale` replays request traces (`trace`) against a fleet whose replicas start,
serve and drain in simulated time (`replicas`, timed by the HTTP simulator's engine model), seen
by each autoscaler through its own metric pipeline (`signals`), and scores `llmserve`'s policy
against its peers (`baselines`) and an oracle that knows the future (`policies`): `run`, `plot`.
Named `fleet` so it does not clash with `llmserve.sim`, the HTTP engine simulator.
"""
