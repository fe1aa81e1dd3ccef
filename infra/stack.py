"""ImageSearchStack: composes the constructs (search domain, ingestion, query API, monitoring).

It defines no resource itself; each AWS concern is a construct in its own module.
"""

from aws_cdk import Stack
from constructs import Construct

from infra.ingestion import Ingestion


class ImageSearchStack(Stack):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id, description="Serverless image similarity search")
        Ingestion(self, "Ingestion")
