"""The patient's own entries (self-reported data), kept as FHIR resources."""
