"""``python -m devtools.shopify_simulator``: run the simulator in the foreground."""

from devtools.shopify_simulator.server import main

main()
