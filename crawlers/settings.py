"""Scrapy settings for corpusforge crawlers: polite by default, resumable, writing to the corpus store.

Override per run with ``-s NAME=VALUE`` (e.g. ``-s DEPTH_LIMIT=3 -s CLOSESPIDER_PAGECOUNT=500
-s JOBDIR=crawls/court-1 -s CORPUS_ROOT=/data/corpus``). See docs/CRAWLING.md.
"""

BOT_NAME = "corpusforge"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"
COMMANDS_MODULE = "crawlers.commands"  # `scrapy crawl` exits 1 when the crawl wrote (almost) nothing

# An honest user agent naming the project, so site operators know who is crawling and why.
USER_AGENT = "corpusforge/0.1 (legal text corpus research crawler; +https://github.com/corpusforge/corpusforge)"

# --- politeness ---------------------------------------------------------------------------
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0  # floor between requests to one site; AutoThrottle only goes above it
DOWNLOAD_DELAY_JITTER = 0.5  # +-50% around the delay
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 2.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 64 * 1024 * 1024  # court PDFs can be large, but not unbounded

# --- retries: 5xx / timeouts with exponential backoff; 429/503 honour Retry-After ------------
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_BACKOFF_BASE = 1.0  # seconds before retry n: base * 2**(n-1), capped below
RETRY_BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 600.0  # a longer Retry-After gives up on the page (recorded in crawl_failures)
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawlers.middlewares.BackoffRetryMiddleware": 550,
}

# --- scope ----------------------------------------------------------------------------------
DEPTH_LIMIT = 0  # 0 = unlimited; refused deeper links are recorded in crawl_refusals
# Scrapy's depth and offsite policies, with every refused request recorded (crawlers/refusals.py)
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "crawlers.refusals.DepthRefusalMiddleware": 900,
    "crawlers.refusals.OffsiteRefusalMiddleware": 950,
}
# a profile's bundled site (the demo) served on loopback for the crawl (crawlers/extensions.py)
EXTENSIONS = {"crawlers.extensions.ServeProfileSite": 100}
DEPTH_PRIORITY = 1  # breadth-first: listings before deep pages, which suits paginated sites
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"

# --- extraction -----------------------------------------------------------------------------
EXTRACTION_WORKERS = 2  # worker processes for trafilatura / pypdf
EXTRACTION_TIMEOUT = 20.0  # seconds per page; a slower page is killed and recorded as failed

# --- output ---------------------------------------------------------------------------------
ITEM_PIPELINES = {"crawlers.pipelines.CorpusWriterPipeline": 500}
CORPUS_ROOT = "data"
CRAWL_SHARD_MB = 128
CRAWL_FLUSH_ITEMS = 500
CRAWL_FLUSH_SECONDS = 60.0
CRAWL_SKIP_KNOWN = True  # a URL / raw body / text any earlier crawl into this corpus wrote is a duplicate page
# a crawl that fetched more than CORPUS_MIN_DOCUMENTS_PAGES pages and yielded fewer documents
# than this fails (non-zero exit, reasons in the catalog run); 0 disables the check
CORPUS_MIN_DOCUMENTS = 1
CORPUS_MIN_DOCUMENTS_PAGES = 10
DEMO_SITE_PORT = 8750  # the demo profile's loopback server; 0 = any free port

# --- optional HTTP cache (off by default): expiring and size-bounded --------------------------
HTTPCACHE_ENABLED = False
HTTPCACHE_DIR = "httpcache"
HTTPCACHE_EXPIRATION_SECS = 7 * 24 * 3600
HTTPCACHE_STORAGE = "crawlers.httpcache.BoundedFilesystemCacheStorage"
HTTPCACHE_MAX_BYTES = 2 * 1024**3
HTTPCACHE_IGNORE_HTTP_CODES = [429, 500, 502, 503, 504]

TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False  # no listening ports besides the demo site
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"
