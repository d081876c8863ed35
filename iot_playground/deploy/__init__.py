"""Deployment and operations: IAM policies, CloudFormation and Terraform templates, the Lambda
package, tables and bucket, guardrails, capacity, the Grafana dashboard (`iot-playground package`,
`policies`, `tables`, `guards`, `capacity`, `dashboard`, `openapi`)."""
