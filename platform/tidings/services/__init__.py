"""Services: small classes wiring core logic to ports. No engine imports here."""
