"""`llmserve sim`: a vLLM or TGI engine simulator for tests and benchmarks without GPUs."""
