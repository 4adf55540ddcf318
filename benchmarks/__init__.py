"""The benchmark harness: datasets, runners, metrics and reports. The offline demo lives here too."""
