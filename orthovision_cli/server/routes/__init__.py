"""One module per FHIR resource of the reference service; each exports `routes`."""
