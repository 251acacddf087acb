"""Log context and metrics. Every room uses them, so they sit at the bottom of the import graph:
nothing here imports the rest of the service (the database gauges read models lazily, at scrape)."""
