"""Chat backends and API plumbing. ``backend`` is the seam VLM judges, critics and the controller call: the
provider-neutral messages and replies, the ``ChatBackend`` protocol and the registry of backends by provider
name (``openai``, ``anthropic``; loaded lazily). ``chat`` is the shared half of the HTTP backends
(``openai_chat``, ``anthropic_chat``): options and endpoints, error classification, rate limits, prices.
``function_chat`` is the test double, a backend driven by a Python function. Importing this package imports
no SDK; each HTTP backend imports its SDK when it is built and says which extra to install when it is
missing."""
