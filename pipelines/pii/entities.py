"""Entity types (names of placeholders, counts fields and findings rows). No heavy imports."""

# Structured types come from pattern recognizers; NER types from spaCy via presidio.
STRUCTURED_ENTITIES = (
    "EMAIL",
    "PHONE",
    "PRC_ID",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "URL_CREDENTIALS",
    "SECRET",
)
NER_ENTITIES = ("PERSON", "LOCATION")
ALL_ENTITIES = STRUCTURED_ENTITIES + NER_ENTITIES
