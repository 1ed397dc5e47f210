"""The bottom layer, imported by every other package and importing none of them: configuration
errors and YAML reading (`common.config`), and the offline default model (`common.models`)."""
