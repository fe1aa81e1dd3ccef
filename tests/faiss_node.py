"""faiss-engine indexes on the test node, whose k-NN plugin has no faiss library.

The k-NN zip on Maven Central carries no native libraries, and the plugin (2.19.1.0) loads faiss's only
to build a graph or to search one. With ``index.knn.advanced.approximate_threshold: -1`` it builds none
(``NativeEngines990KnnVectorsWriter``): the vectors stay in Lucene's flat format and every k-NN query
is answered by the plugin's exact search in Java (``KNNWeight``, ``ExactSearcher``), as it is for any
segment without a graph. The rest is the real faiss path: the mapping and its validation (the fp16
encoder, faiss's space types), ``index.knn.algo_param.ef_search``, cosinesimil's normalisation, query
parsing (``method_parameters``, ``filter``), filtering and ``min_score``.

What it cannot reach: the HNSW graph, faiss's distances and the plugin's translation of them
(``Faiss.SCORE_TRANSLATIONS``, checked in tests/unit/test_index_mapping.py), fp16 rounding in search.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opensearchpy import OpenSearch

NO_NATIVE_GRAPHS = {"index.knn.advanced.approximate_threshold": -1}


@contextmanager
def faiss_without_graphs(client: OpenSearch, prefix: str) -> Iterator[None]:
    """Indexes created under ``<prefix>-`` meanwhile build no native graph (an index template).

    The bodies our code sends stay exactly as they are: the template adds the one setting at creation.
    """
    name = f"{prefix}-no-native-graphs"
    template = {"index_patterns": [f"{prefix}-*"], "template": {"settings": NO_NATIVE_GRAPHS}}
    client.indices.put_index_template(name=name, body=template)
    try:
        yield
    finally:
        client.indices.delete_index_template(name=name)
