"""The storefront domain: what the App Proxy endpoints answer (reads.py)."""
