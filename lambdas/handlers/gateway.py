"""What API Gateway does in front of the query handler, written once for the CDK app and the local gateway.

Standard library only: ``infra/query_api.py`` configures the REST API with it at synth time and
``localmode/api_gateway.py`` imitates the same encoding, so the two cannot drift apart.
"""

BINARY_MEDIA_TYPES = ("image/*", "application/octet-stream")
"""The REST API's ``binaryMediaTypes``: such bodies reach the function base64-encoded; JSON stays text."""

PAYLOAD_MAX_BYTES = 10 * 1024 * 1024
"""API Gateway's quota on a REST API request's payload (10 MB): it refuses larger requests itself.
Lambda's 6 MB limit on what reaches the function is the handler's to explain."""

HEAD_MAX_BYTES = 10_240
"""API Gateway's quota on a REST API request's request line and header values together."""
