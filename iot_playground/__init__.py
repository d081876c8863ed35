"""Developer and operator tools around the IoT Playground API (not deployed to Lambda)."""
