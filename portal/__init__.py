"""SMART on FHIR patient portal and personal health record."""
