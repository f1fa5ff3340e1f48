"""`llmserve proxy`: the OpenAI front door beside each engine.

API keys (`keys`), bounded input on the wire (`protocol`) and in the application (`app`), admission
(`admission`), the relay, and metrics on a port of their own (`main`). Safe by default: keys are
required unless `--auth none` says otherwise, and every input has a size and a deadline.
"""
