"""Shopify Admin GraphQL simulator (development and tests only; not part of the service or its image).

``server`` holds the HTTP layer, ``SimulatorServer``, ``SimulatorControl`` and ``main``; ``state`` the
in-memory shops; ``validation`` the schema checks; ``executor`` the supported queries and mutations.
Run it with ``python -m devtools.shopify_simulator --port 8081``.
"""

from devtools.shopify_simulator.server import (
    GRAPHQL_PATH,
    SimulatorApp,
    SimulatorControl,
    SimulatorServer,
    SimulatorState,
    create_simulator_app,
    main,
)

__all__ = [
    "GRAPHQL_PATH",
    "SimulatorApp",
    "SimulatorControl",
    "SimulatorServer",
    "SimulatorState",
    "create_simulator_app",
    "main",
]
