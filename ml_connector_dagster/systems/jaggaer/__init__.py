"""JAGGAER One Platform: the J1P REST client (configured paths), its record models, the cXML documents
(built and DTD-validated with lxml; the DTDs ship in ``dtd/``) and the Dagster resource."""
