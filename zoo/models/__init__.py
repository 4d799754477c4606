"""Model families, one file each; imported lazily by the registry (see ``zoo.meta.catalog``)."""
