"""Talking to EHRs: discovery, OAuth (authlib), token store, FHIR client. No views, no templates."""
