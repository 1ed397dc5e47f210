"""Spiders: `legal_docs` (listing/pagination driven) and `legal_sitemap` (sitemap driven)."""
