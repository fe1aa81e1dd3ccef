"""ImageSearchStack: composes the constructs and wires their access; it defines no resource itself."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from infra.artifacts import Artifacts, ArtifactsProps
from infra.config import DeploymentConfig
from infra.functions import role_of
from infra.image_store import ImageStore, ImageStoreProps
from infra.index_bootstrap import IndexBootstrap, IndexBootstrapProps
from infra.ingestion import Ingestion, IngestionProps
from infra.monitoring import Monitoring, MonitoringProps
from infra.network import Network, NetworkProps
from infra.packaging import LAMBDA_MODEL_DIR, build_bundle, check_size, lambda_code, resolve_model
from infra.query_api import QueryApi, QueryApiProps
from infra.reindex import Reindex, ReindexProps
from infra.search_domain import OPERATOR, READER, WRITER, SearchDomain, SearchDomainProps
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings


class ImageSearchStack(Stack):
    """Upload images to a bucket, find similar ones over HTTPS; configured by context (infra/config.py)."""

    def __init__(self, scope: Construct, construct_id: str, *, env: Environment | None = None) -> None:
        super().__init__(scope, construct_id, env=env, description="Serverless image similarity search")
        config = DeploymentConfig.from_context(self.node.get_all_context())
        model_dir = resolve_model(config)
        manifest = ModelManifest.load(model_dir)
        bundle = build_bundle(model_dir=model_dir)
        check_size(bundle, manifest)
        code = lambda_code(bundle)
        network = Network(self, "Network", props=NetworkProps(config=config)) if config.vpc else None

        search = SearchDomain(self, "Search", props=SearchDomainProps(config=config, network=network))
        store = ImageStore(
            self,
            "Store",
            props=ImageStoreProps(config=config, query_upload_prefix=Settings.query_upload_prefix),
        )
        artifacts = Artifacts(
            self, "Artifacts", props=ArtifactsProps(config=config, access_logs=store.access_logs)
        )
        settings = Settings(
            model_dir=Path(LAMBDA_MODEL_DIR),
            images_bucket=store.bucket.bucket_name,
            opensearch_url=search.endpoint_url,
            aws_region=self.region,
            index_prefix=config.index_prefix,
            cors_origin=config.cors_origin,  # API Gateway's preflight and the function's answers agree
        )
        ingestion = Ingestion(
            self,
            "Ingestion",
            props=IngestionProps(config=config, settings=settings, code=code, store=store, network=network),
        )
        query = QueryApi(
            self,
            "Query",
            props=QueryApiProps(config=config, settings=settings, code=code, store=store, network=network),
        )
        reindex = Reindex(
            self,
            "Reindex",
            props=ReindexProps(
                config=config, settings=settings, code=code, store=store, artifacts=artifacts, network=network
            ),
        )
        for function in (ingestion.function, query.function):
            artifacts.grant_read_models(function)  # a re-index serves, and writes to, an older model's index
        writers = (role_of(ingestion.function), role_of(reindex.backfill))
        readers, operators = (role_of(query.function),), (role_of(reindex.control),)
        index_pattern = f"{config.index_prefix}-*"
        for roles, access in ((writers, WRITER), (readers, READER), (operators, OPERATOR)):
            for role in roles:
                search.admit(role, index_pattern=index_pattern, access=access)
        if network:
            search.allow_connections_from(network.functions)
        bootstrap = IndexBootstrap(
            self,
            "IndexBootstrap",
            props=IndexBootstrapProps(
                config=config,
                settings=settings,
                manifest=manifest,
                code=code,
                search=search,
                writers=writers,
                readers=readers,
                operators=operators,
                artifacts=artifacts,
                state_machine=reindex.state_machine,
                network=network,
            ),
        )
        Monitoring(
            self,
            "Monitoring",
            props=MonitoringProps(
                config=config,
                domain=search.domain,
                dead_letters=ingestion.dead_letters,
                ingest=ingestion.function,
                query=query.function,
                api=query.api,
            ),
        )
        CfnOutput(self, "ApiUrl", value=query.api.url, description="Base URL of the query API")
        if query.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=query.api_key.key_id,
                description="`aws apigateway get-api-key --include-value --api-key <id>` prints the key",
            )
        CfnOutput(self, "ImagesBucket", value=store.bucket.bucket_name, description="Upload images here")
        CfnOutput(
            self, "ServingAlias", value=bootstrap.serving, description="The alias of the index that answers"
        )
        CfnOutput(
            self,
            "ReindexStateMachine",
            value=reindex.state_machine.state_machine_arn,
            description="`imgsearch backfill --stack` starts it: fills an index from the bucket",
        )
        CfnOutput(
            self,
            "ReportsBucket",
            value=artifacts.reports.bucket_name,
            description="Backfill results, and the images bucket's inventory when the profile keeps one",
        )
        CfnOutput(
            self,
            "ReindexFunction",
            value=reindex.control.function_name,
            description="`imgsearch reindex ... --stack` asks it: status, switch, rollback, cleanup",
        )
        CfnOutput(self, "ModelId", value=manifest.model_id, description="The embedding model deployed")
