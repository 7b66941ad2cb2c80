"""Serving load: the workload, its client, traces, token counts, server metrics, test server."""
