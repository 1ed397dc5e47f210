"""PII detection and redaction on presidio: recognizers, shard analyzer, redaction, audit scan."""
