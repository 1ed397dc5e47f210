"""LLM synthesis: seed documents from the catalog -> prompts -> any OpenAI-compatible endpoint -> raw rows."""
