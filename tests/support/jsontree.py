"""Walking a JSON document by paths, for the tests that mutate configs and manifests."""


def paths(doc, at=()):
    """Every node's path (a tuple of keys and indexes), the root's () first."""
    yield at
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, at + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, at + (i,))
