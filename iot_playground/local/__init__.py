"""`make run` (`iot-playground serve`): an embedded DynamoDB/S3 endpoint and `chalice local`."""
