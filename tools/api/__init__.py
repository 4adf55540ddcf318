"""API plumbing shared by the OpenAI-compatible and Anthropic backends: options and endpoints, error
classification, rate limits, prices, and the chat adapters. Importing this package imports no SDK; each
adapter imports its SDK when it is built and says which extra to install when it is missing."""
