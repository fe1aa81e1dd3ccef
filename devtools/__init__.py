"""Developer and test tooling: nothing in the deployed functions imports this package."""
