"""Entity types (names of placeholders, counts fields and findings rows). No heavy imports."""

# Structured types come from pattern recognizers; NER types from spaCy (English) and LAC plus
# legal-context patterns (Chinese). ADDRESS: a street-level address (Chinese documents).
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
NER_ENTITIES = ("PERSON", "LOCATION", "ADDRESS")
ALL_ENTITIES = STRUCTURED_ENTITIES + NER_ENTITIES
NER_LANGUAGES = ("en", "zh")  # languages with a NER path (`engine.ner_findings`)
