"""Deployment and operations: `iot-playground package`, `policies`, `tables`, `guards`, `capacity`,
`dashboard` and `device`."""
