"""`llmserve proxy`: the OpenAI front door beside each engine (auth, admission, relay, metrics)."""
