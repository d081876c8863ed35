"""Grafana dashboards and provisioning for the IoT Playground API (not deployed to Lambda)."""
