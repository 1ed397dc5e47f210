"""Project commands (COMMANDS_MODULE): `scrapy crawl` with an exit status that reports the crawl's verdict."""
