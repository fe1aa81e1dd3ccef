"""Run the system on one machine: the query API behind a local server that speaks API Gateway's events."""
