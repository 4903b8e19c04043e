"""The sandbox's FHIR store: loading bundles, indexing for search, searching."""
