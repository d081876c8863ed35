"""Deployment and operations: the description of a stage's resources beyond Chalice's output, its
CloudFormation and Terraform renderings and boto3 application, the Lambda package, capacity, the
Grafana dashboard (`iot-playground package`, `policies`, `tables`, `guards`, `capacity`, `dashboard`)."""
